/**
 * Health check, HealthzAdaptor and metrics (reference cases 35 and 36).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LeaderElector, runOrDie } from "../../src/election/elector.js";
import { newLeaderHealthzAdaptor } from "../../src/election/healthz.js";
import { LockError } from "../../src/election/lock.js";
import { setMetricsProvider } from "../../src/election/metrics.js";
import { MemoryLock } from "../../src/locks/memory/index.js";
import { Candidate, RecordingMetrics, S, newEnv, record } from "./harness.js";
import type { CandidateOptions } from "./harness.js";

const LD60: CandidateOptions = { leaseDuration: 60 * S, renewDeadline: 30 * S, retryPeriod: 5 * S, name: "foo" };
const MESSAGE = "failed election to renew leadership on lease foo";

describe("check and HealthzAdaptor", () => {
  test("case 35: check(20s) of a leader last observed at T is healthy up to T+LD+20s inclusive, then fails", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", LD60);
    assert.equal(c.le.check(20 * S), undefined, "not a leader yet");
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.equal(c.le.check(20 * S), undefined, "just observed");
    await env.clock.advanceTo(61 * S);
    assert.equal(c.le.check(20 * S), undefined);
    await env.clock.advanceTo(80 * S);
    assert.equal(c.le.check(20 * S), undefined, "exactly LD + timeout is still healthy");
    await env.clock.advanceTo(80 * S + 1);
    const err = c.le.check(20 * S);
    assert.ok(err instanceof Error);
    assert.equal(err.message, MESSAGE);
    await env.clock.advanceTo(3600 * S);
    assert.equal(c.le.check(20 * S)?.message, MESSAGE);
  });

  test("case 35: a follower is always healthy, however old its observation", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 60 }));
    const c = new Candidate(env, "baz", LD60);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advanceTo(3600 * S);
    assert.equal(c.le.check(20 * S), undefined);
  });

  test("case 35: the adaptor is named leaderElection, is healthy without an elector, and delegates once set", async () => {
    const env = newEnv();
    const adaptor = newLeaderHealthzAdaptor(20 * S);
    assert.equal(adaptor.name(), "leaderElection");
    assert.equal(adaptor.check(), undefined);
    const c = new Candidate(env, "baz", LD60);
    adaptor.setLeaderElection(c.le);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    await env.clock.advanceTo(80 * S);
    assert.equal(adaptor.check(), undefined);
    await env.clock.advanceTo(3600 * S);
    assert.equal(adaptor.check()?.message, MESSAGE);
  });

  test("runOrDie wires the watchDog: a leader whose renewals stopped becomes unhealthy", async () => {
    const env = newEnv();
    const adaptor = newLeaderHealthzAdaptor(20 * S);
    const c = new Candidate(env, "baz", LD60);
    let settled = false;
    void Promise.resolve(runOrDie(new AbortController().signal, { ...c.config, watchDog: adaptor })).finally(() => (settled = true));
    await env.clock.advanceTo(6 * S); // acquired at 0, renewed at 5s
    assert.equal(c.started, 1);
    c.lock.fail("all", new LockError("connect ECONNREFUSED"));
    await env.clock.runUntil(() => settled, 60 * S, "runOrDie to end after the renew deadline");
    await env.clock.advanceTo(80 * S);
    assert.equal(adaptor.check(), undefined, "within LD + timeout of the last renewal");
    await env.clock.advanceTo(90 * S);
    assert.equal(adaptor.check()?.message, MESSAGE);
  });

  test("new LeaderElector does not wire a watchDog (only runOrDie does)", async () => {
    const env = newEnv();
    const adaptor = newLeaderHealthzAdaptor(20 * S);
    const c = new Candidate(env, "baz", LD60);
    const le = new LeaderElector({ ...c.config, watchDog: adaptor });
    assert.equal(await le.tryAcquireOrRenew(), true);
    await env.clock.advanceTo(3600 * S);
    assert.ok(le.check(20 * S) instanceof Error);
    assert.equal(adaptor.check(), undefined);
  });
});

describe("metrics", () => {
  test("case 36: the leader gauge is 0 at construction, 1 on acquire, 0 after a failed renewal", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { name: "foo" });
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    assert.deepEqual(c.entries("metric:"), ["metric:leaderOff:foo", "metric:leaderOn:foo"]);
    c.lock.fail("all", new LockError("connect ECONNREFUSED"));
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    assert.deepEqual(c.entries("metric:"), ["metric:leaderOff:foo", "metric:leaderOn:foo", "metric:leaderOff:foo"]);
  });

  test("case 36: takeovers (empty record, released, expired foreign lease) never count as slow-path renewals", async () => {
    for (const existing of [
      record({ holderIdentity: "", leaseDurationSeconds: 0, acquireTime: null, renewTime: null }),
      record({ holderIdentity: "", leaseDurationSeconds: 1, leaderTransitions: 3 }),
      record({ holderIdentity: "bing", leaseDurationSeconds: 5 }),
    ]) {
      const env = newEnv();
      env.store.put(existing);
      const c = new Candidate(env, "baz", { name: "foo" });
      let ok = await c.le.tryAcquireOrRenew();
      if (!ok) {
        await env.clock.advance(6 * S);
        ok = await c.le.tryAcquireOrRenew();
      }
      assert.equal(ok, true, `took ${JSON.stringify(existing)}`);
      assert.deepEqual(c.entries("metric:slowpath"), []);
    }
  });

  test("the global metrics provider is used when the config has none", () => {
    const log: string[] = [];
    setMetricsProvider(new RecordingMetrics(log));
    const env = newEnv();
    new LeaderElector({
      lock: new MemoryLock(env.store, "baz"),
      leaseDuration: 15 * S,
      renewDeadline: 10 * S,
      retryPeriod: 2 * S,
      name: "global",
      clock: env.clock,
      callbacks: { onStartedLeading() {}, onStoppedLeading() {} },
    });
    assert.deepEqual(log, ["metric:leaderOff:global"]);
  });
});
