/**
 * Where leader-run is deliberately stricter than client-go (spec/election.md, "Deviations"): D1 monotonic
 * time, D2 stop deadline from the last successful write's send time, D3 a foreign holder ends leadership
 * at once, D7 every acquisition is a new term, D8 watch-driven hand-over. D4 is in callbacks.test.ts,
 * D5 in release.test.ts, D6 in validation.test.ts. LD 15s, RD 10s, RP 2s unless stated.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LockError } from "../../src/election/lock.js";
import { Candidate, S, abortAndWait, newEnv, record, startsOf, wallAt } from "./harness.js";

const HOUR = 3600 * S;

describe("D1: monotonic time", () => {
  test("a wall-clock jump neither shortens nor lengthens a foreign lease", async () => {
    for (const jump of [2 * HOUR, -2 * HOUR]) {
      const env = newEnv();
      env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15 }));
      const c = new Candidate(env, "baz");
      assert.equal(await c.le.tryAcquireOrRenew(), false);
      await env.clock.advanceTo(1 * S);
      env.clock.jumpWall(jump);
      for (const t of [5 * S, 10 * S, 14_900]) {
        await env.clock.advanceTo(t);
        assert.equal(await c.le.tryAcquireOrRenew(), false, `jump ${jump}: took the lease at ${t}ms`);
      }
      await env.clock.advanceTo(15_100);
      assert.equal(await c.le.tryAcquireOrRenew(), true, `jump ${jump}: lease not taken after 15s of monotonic time`);
    }
  });

  test("a wall-clock jump neither ends nor extends leadership; records carry the wall time of the write", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    env.clock.jumpWall(HOUR);
    await env.clock.advanceTo(7 * S);
    env.clock.jumpWall(-3 * HOUR);
    await env.clock.advanceTo(40 * S);
    assert.equal(c.leading, true);
    const lastRenew = Math.max(...startsOf(c.lock, "update"));
    assert.deepEqual(env.store.read()?.renewTime, new Date(wallAt(lastRenew).getTime() - 2 * HOUR));
    assert.deepEqual(env.store.read()?.acquireTime, wallAt(0));
    c.lock.fail("all", new LockError("connect ECONNREFUSED"));
    env.clock.jumpWall(10 * HOUR);
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    assert.equal(c.abortedAt, lastRenew + 10 * S);
  });
});

describe("D2: stop at lastRenewSent + renewDeadline", () => {
  test("a hanging renewal cannot delay the stop: leadership ends at the deadline and the request is aborted", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(1 * S); // acquired (sent) at 0
    c.lock.fail("all", "hang");
    await env.clock.advanceTo(10 * S - 1);
    assert.equal(c.leading, true);
    await env.clock.advance(1);
    assert.equal(c.leading, false);
    assert.equal(c.abortedAt, 10 * S);
    await env.clock.runUntil(() => h.settled, 100, "run to end right after the deadline");
    assert.equal(c.stopped, 1);
    assert.equal(c.lock.hangingCalls, 0, "the hung request was aborted");
  });

  test("the deadline counts from when the last successful renewal was sent, not when it completed", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { lock: { latency: { update: 1 * S } } });
    const h = c.run();
    await env.clock.advanceTo(2500); // the renewal right after acquiring: sent at 0, answered at 1s
    assert.deepEqual(
      c.lock.log.filter((x) => x.op === "update").map((x) => [x.start, x.end, x.outcome]),
      [[0, 1 * S, "ok"]],
    );
    c.lock.fail("all", new LockError("connect ECONNREFUSED"));
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    assert.equal(c.abortedAt, 10 * S, "0 + RD, not 1s + RD");
  });

  test("a renewal whose response was lost does not move the deadline", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(3 * S); // renewed at 2s
    c.lock.fail("update", { error: new LockError("context deadline exceeded"), afterApply: true });
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    assert.ok(startsOf(c.lock, "update", 3 * S).length >= 2, "renewals were attempted (and applied)");
    assert.equal(c.abortedAt, 12 * S);
  });

  test("client-go's case 25 timing would be later: the stop is not postponed to the end of a renew round", async () => {
    // Last success at 2s; with rounds of RD from the round start (4s) client-go would stop at 14s.
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    c.lock.fail("all", new LockError("connect ECONNREFUSED"));
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    assert.ok((c.abortedAt ?? Infinity) <= 12 * S);
  });
});

describe("D3: another holder ends leadership at once", () => {
  test("a renewal that reads an empty holder (forced release) stops at once and does not re-take the lease", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { releaseOnCancel: true });
    const h = c.run();
    await env.clock.advanceTo(5 * S);
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, renewTime: wallAt(5 * S) }));
    const version = env.store.version;
    const mark = c.lock.log.length;
    await env.clock.advanceTo(6 * S);
    assert.equal(c.leading, false);
    assert.equal(c.abortedAt, 6 * S);
    await env.clock.runUntil(() => h.settled, 1 * S, "run to end");
    assert.equal(c.le.isLeader(), false);
    assert.equal(env.store.version, version, "no write: neither a renewal nor a release of a lease that is not ours");
    assert.deepEqual(c.callsSince(mark).filter((op) => op !== "get"), ["update"], "only the failed fast-path update was sent");
  });

  test("the elector reports why leadership ended", async () => {
    const reasons: string[] = [];
    for (const scenario of ["deadline", "foreign_holder", "cancelled"] as const) {
      const env = newEnv();
      const c = new Candidate(env, "baz");
      const h = c.run();
      await env.clock.advanceTo(3 * S);
      if (scenario === "deadline") c.lock.fail("all", new LockError("connect ECONNREFUSED"));
      if (scenario === "foreign_holder") env.store.put(record({ holderIdentity: "bing", renewTime: wallAt(3 * S) }));
      if (scenario === "cancelled") h.controller.abort();
      await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
      const lost = c.electionEvents.filter((e) => e.type === "lost");
      assert.equal(lost.length, 1, `${scenario}: ${JSON.stringify(c.electionEvents)}`);
      const event = lost[0];
      if (event?.type === "lost") reasons.push(event.reason);
    }
    assert.deepEqual(reasons, ["deadline", "foreign_holder", "cancelled"]);
  });
});

describe("D7: every acquisition is a new term", () => {
  test("terms increase on every acquisition, including re-acquisitions by the same identity; renewals keep the term", async () => {
    const env = newEnv();
    const a = new Candidate(env, "baz", { releaseOnCancel: true });
    let h = a.run();
    await env.clock.advanceTo(5 * S);
    assert.equal(a.le.term(), 0);
    assert.equal(env.store.read()?.leaderTransitions, 0);
    await abortAndWait(env, h); // released
    h = a.run(); // the same elector campaigns again and takes its own released lease
    await env.clock.advance(1);
    assert.equal(a.started, 2);
    assert.equal(a.le.term(), 1);
    assert.equal(env.store.read()?.leaderTransitions, 1);
    await env.clock.advance(10 * S);
    assert.equal(a.le.term(), 1, "renewals keep the term");
    assert.equal(env.store.read()?.leaderTransitions, 1);
    await abortAndWait(env, h);
    const b = new Candidate(env, "bing");
    const hb = b.run();
    await env.clock.advance(1);
    assert.equal(b.le.term(), 2);
    assert.equal(a.le.term(), 1, "term() is the value of our last term");
    await abortAndWait(env, hb);
  });

  test("re-running after our own unreleased lease lapsed is a new term with a new acquireTime", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    let h = c.run();
    await env.clock.advanceTo(5 * S);
    await abortAndWait(env, h); // not released: the record still names baz
    await env.clock.advanceTo(30 * S);
    h = c.run();
    await env.clock.advance(1);
    assert.equal(c.started, 2);
    assert.equal(env.store.read()?.leaderTransitions, 1);
    assert.equal(c.le.term(), 1);
    assert.deepEqual(env.store.read()?.acquireTime, wallAt(30 * S));
    assert.deepEqual(c.entries("metric:slowpath"), []);
    await abortAndWait(env, h);
  });
});

describe("D8: watch-driven hand-over", () => {
  test("a watching candidate takes a released lease within milliseconds, not at its next retry", async () => {
    const env = newEnv();
    const baz = new Candidate(env, "baz", { releaseOnCancel: true });
    const hBaz = baz.run();
    await env.clock.flush();
    const bing = new Candidate(env, "bing", { lock: { watch: true } });
    const hBing = bing.run();
    await env.clock.advanceTo(10_500);
    assert.equal(bing.started, 0);
    assert.ok(env.store.watcherCount() >= 1, "the candidate watches while campaigning");
    await abortAndWait(env, hBaz, 1);
    const releasedAt = env.clock.now();
    await env.clock.runUntil(() => bing.started === 1, 50, "watching candidate to take the released lease");
    assert.ok((bing.startedAt ?? Infinity) - releasedAt <= 50);
    assert.equal(env.store.read()?.holderIdentity, "bing");
    assert.equal(env.store.read()?.leaderTransitions, 1);
    await abortAndWait(env, hBing);
    assert.equal(env.store.watcherCount(), 0, "the watch ends with run");
  });

  test("notifications about a valid foreign lease never make a candidate take it", async () => {
    const env = newEnv();
    const { clock, store } = env;
    store.put(record({ holderIdentity: "baz", leaseDurationSeconds: 15, renewTime: clock.wallNow() }));
    const beat = (): void => {
      // A renewal, then a byte-identical rewrite: two notifications per beat.
      const r = record({ holderIdentity: "baz", leaseDurationSeconds: 15, renewTime: clock.wallNow() });
      store.put(r);
      store.put(r);
      clock.setTimer(beat, 2 * S);
    };
    clock.setTimer(beat, 2 * S);
    const bing = new Candidate(env, "bing", { lock: { watch: true } });
    const h = bing.run();
    await clock.advance(120 * S);
    assert.equal(bing.started, 0);
    assert.deepEqual(bing.lock.calls.filter((op) => op !== "get"), []);
    await abortAndWait(env, h);
    assert.equal(store.watcherCount(), 0);
  });
});

describe("hand-over request (preferredHolder)", () => {
  test("a renew read naming another preferredHolder ends leadership with reason handover, and the lease is released", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { releaseOnCancel: true });
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    const current = env.store.read();
    assert.ok(current);
    env.store.put({ ...current, preferredHolder: "step-down_1" });
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    const lost = c.electionEvents.filter((e) => e.type === "lost");
    assert.deepEqual(lost.map((e) => (e.type === "lost" ? e.reason : "")), ["handover"]);
    assert.equal(env.store.read()?.holderIdentity, "", "released after the work stopped");
  });

  test("our own identity as preferredHolder is no request", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    const current = env.store.read();
    assert.ok(current);
    env.store.put({ ...current, preferredHolder: "baz" });
    await env.clock.advanceTo(10 * S);
    assert.equal(c.le.isLeader(), true);
    await abortAndWait(env, h);
  });
});
