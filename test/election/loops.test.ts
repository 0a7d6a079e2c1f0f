/**
 * The acquire and renew loops driven by `run` (reference cases 14, 15 and 22–27), on a fake clock.
 * LD 15s, RD 10s, RP 2s unless stated.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConflictError, LockError } from "../../src/election/lock.js";
import { Candidate, S, abortAndWait, newEnv, record, startsOf, wallAt } from "./harness.js";

describe("renew loop", () => {
  test("case 14: a renewal of a valid own lease is one update and no get, keeping acquireTime and transitions", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, leaderTransitions: 5 }));
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.flush();
    assert.equal(c.started, 1);
    assert.equal(env.store.read()?.leaderTransitions, 6);
    const mark = c.lock.log.length;
    await env.clock.advanceTo(2 * S);
    assert.deepEqual(c.callsSince(mark), ["update"]);
    const r = env.store.read();
    assert.equal(r?.holderIdentity, "baz");
    assert.deepEqual(r?.acquireTime, wallAt(0));
    assert.deepEqual(r?.renewTime, wallAt(2 * S));
    assert.equal(r?.leaderTransitions, 6);
    assert.equal(c.le.term(), 6);
    assert.deepEqual(c.entries("metric:slowpath"), []);
    await abortAndWait(env, h);
  });

  test("case 15: a conflicting fast-path renewal falls back to get + update and counts a slow path", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, leaderTransitions: 5 }));
    const c = new Candidate(env, "baz", { name: "foo" });
    const h = c.run();
    await env.clock.flush();
    const mark = c.lock.log.length;
    c.lock.fail("update", new ConflictError("the object has been modified"), 1);
    await env.clock.advanceTo(2 * S);
    assert.deepEqual(c.callsSince(mark), ["update", "get", "update"]);
    const r = env.store.read();
    assert.equal(r?.holderIdentity, "baz");
    assert.deepEqual(r?.acquireTime, wallAt(0));
    assert.equal(r?.leaderTransitions, 6);
    assert.deepEqual(c.entries("metric:slowpath"), ["metric:slowpath:foo"]);
    assert.equal(c.leading, true);
    await abortAndWait(env, h);
  });

  // Case 15 (our record rewritten by someone else, same holder) is adapted by D9: see identity.test.ts.

  test("a lease deleted while leading is re-created, leadership continues and the term does not go backwards", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, leaderTransitions: 5 }));
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    assert.equal(c.le.term(), 6);
    env.store.delete();
    const mark = c.lock.log.length;
    await env.clock.advanceTo(4 * S);
    assert.deepEqual(c.callsSince(mark), ["update", "get", "create"]);
    assert.equal(env.store.read()?.holderIdentity, "baz");
    assert.equal(c.leading, true);
    assert.ok((c.le.term() ?? -1) >= 6, `term went from 6 to ${c.le.term()}`);
    assert.ok((env.store.read()?.leaderTransitions ?? -1) >= 6);
    await abortAndWait(env, h);
  });

  test("case 23: lock operations of a leader cancelled during its second renewal", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { leaseDuration: 15 * S, renewDeadline: 2 * S, retryPeriod: 1 * S });
    const h = c.run();
    c.lock.onCall = (op, n) => {
      if (op === "update" && n === 2) h.controller.abort();
    };
    await env.clock.runUntil(() => h.settled, 30 * S, "run to end");
    assert.deepEqual(c.lock.calls, ["get", "create", "update", "update"]);
    assert.equal(c.stopped, 1);
  });

  test("case 23: lock operations when the second renewal conflicts and the leader is cancelled during the fourth update", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { leaseDuration: 15 * S, renewDeadline: 2 * S, retryPeriod: 1 * S });
    const h = c.run();
    c.lock.onCall = (op, n) => {
      if (op === "update" && n === 2) c.lock.fail("update", new ConflictError("the object has been modified"), 1);
      if (op === "update" && n === 4) h.controller.abort();
    };
    await env.clock.runUntil(() => h.settled, 30 * S, "run to end");
    assert.deepEqual(c.lock.calls, ["get", "create", "update", "update", "get", "update", "update"]);
  });

  test("case 24: in steady state each renew round starts about RP after the previous success, one update each", async () => {
    const env = newEnv();
    const latency = 100;
    const c = new Candidate(env, "baz", { lock: { latency: { update: latency } } });
    const h = c.run();
    await env.clock.flush();
    const mark = c.lock.log.length;
    await env.clock.advance(60 * S);
    const calls = c.lock.log.slice(mark);
    assert.ok(calls.length >= 20, `only ${calls.length} renewals in 60s`);
    assert.ok(calls.every((call) => call.op === "update" && call.outcome === "ok"), "renewals are single fast-path updates");
    for (let i = 1; i < calls.length; i++) {
      const prev = calls[i - 1];
      const cur = calls[i];
      assert.ok(prev !== undefined && cur !== undefined);
      const gap = cur.start - prev.start;
      assert.ok(gap >= 2 * S && gap <= 2 * S + latency, `round ${i} started ${gap}ms after the previous one`);
    }
    assert.equal(c.leading, true);
    await abortAndWait(env, h);
  });

  test("case 25 adapted (D2): with the store down from t0 and the last success at t0-2s, leadership ends at t0+8s", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { name: "foo" });
    const h = c.run();
    await env.clock.flush();
    await env.clock.advanceTo(3 * S); // renewed at once after acquiring, then at 2s: lastRenewSent = 2s
    assert.deepEqual(startsOf(c.lock, "update"), [0, 2 * S]);
    const t0 = 4 * S;
    c.lock.fail("all", new LockError("connect ECONNREFUSED"));
    await env.clock.advanceTo(t0 + 8 * S - 1);
    assert.equal(c.leading, true, "still leading just before lastRenewSent + RD");
    assert.equal(h.settled, false);
    await env.clock.advance(1);
    assert.equal(c.leading, false, "stopped at lastRenewSent + RD");
    assert.equal(c.abortedAt, t0 + 8 * S);
    await env.clock.runUntil(() => h.settled, 1, "run to end");
    const attempts = [...new Set(c.lock.log.filter((call) => call.start >= t0).map((call) => call.start))];
    assert.deepEqual(attempts, [t0, t0 + 2 * S, t0 + 4 * S, t0 + 6 * S], "attempts at t0, +2, +4, +6 and none at +8");
    assert.equal(c.stopped, 1);
    assert.deepEqual(c.lock.events, ["Normal LeaderElection baz became leader", "Normal LeaderElection baz stopped leading"]);
    assert.equal(c.entries("metric:").at(-1), "metric:leaderOff:foo");
    assert.equal(c.le.isLeader(), true, "isLeader() still reflects the last observed record");
    assert.deepEqual(env.store.read()?.renewTime, wallAt(2 * S), "no release without releaseOnCancel");
  });

  test("case 26 adapted (D3): a renewal that reads another valid holder ends leadership at once", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.flush();
    await env.clock.advanceTo(5 * S);
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, leaderTransitions: 1, renewTime: wallAt(5 * S) }));
    await env.clock.advanceTo(6 * S); // next renewal
    assert.equal(c.leading, false);
    assert.equal(c.abortedAt, 6 * S, "not at the end of a renew deadline");
    assert.equal(c.le.isLeader(), false);
    assert.equal(c.le.getLeader(), "bing");
    await env.clock.runUntil(() => h.settled, 1, "run to end");
    assert.deepEqual(c.newLeaders, ["baz", "bing"]);
    assert.equal(c.stopped, 1);
    assert.equal(env.store.read()?.holderIdentity, "bing", "the new holder's record is untouched");
  });
});

describe("acquire loop", () => {
  test("case 22: acquire attempts are spaced uniformly in [RP, 2.2 RP) measured end to start", async () => {
    const env = newEnv(42);
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 10_000_000 }));
    const c = new Candidate(env, "baz", { lock: { latency: { get: 150 } } });
    const h = c.run();
    await env.clock.runUntil(() => c.lock.log.filter((call) => call.end !== undefined).length >= 1001, 5000 * S, "1001 attempts");
    const gets = c.lock.log;
    assert.equal(gets[0]?.start, 0, "first attempt at once");
    const gaps: number[] = [];
    for (let i = 1; i <= 1000; i++) {
      const prev = gets[i - 1];
      const cur = gets[i];
      assert.ok(prev?.end !== undefined && cur !== undefined && cur.op === "get");
      gaps.push(cur.start - prev.end);
    }
    const min = Math.min(...gaps);
    const max = Math.max(...gaps);
    assert.ok(min >= 2 * S, `min gap ${min}`);
    assert.ok(max < 4.4 * S, `max gap ${max}`);
    assert.ok(min < 2.1 * S && max > 4.3 * S, `jitter covers the range: min ${min}, max ${max}`);
    assert.equal(c.started, 0);
    await abortAndWait(env, h);
  });

  test("case 27: cancelling during acquisition ends run promptly with onStoppedLeading only", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 3600 }));
    const c = new Candidate(env, "baz", { releaseOnCancel: true, name: "foo" });
    const h = c.run();
    await env.clock.advanceTo(5 * S);
    h.controller.abort();
    await env.clock.runUntil(() => h.settled, 4400, "run to end within one retry gap");
    assert.equal(c.started, 0);
    assert.equal(c.stopped, 1);
    assert.deepEqual(c.lock.events, []);
    assert.ok(c.lock.calls.every((op) => op === "get"), "no write, no release");
    assert.deepEqual(c.entries("metric:"), ["metric:leaderOff:foo"], "gauge stays 0");
    assert.equal(env.store.read()?.holderIdentity, "bing");
  });

  test("run with an already aborted signal makes no lock call and still calls onStoppedLeading", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const controller = new AbortController();
    controller.abort();
    await c.le.run(controller.signal);
    assert.deepEqual(c.lock.calls, []);
    assert.equal(c.started, 0);
    assert.equal(c.stopped, 1);
  });

  test("run is one campaign: after leadership is lost nothing re-campaigns", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    c.lock.fail("all", new LockError("connect ECONNREFUSED"));
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    c.lock.clearFailures();
    const calls = c.lock.log.length;
    await env.clock.advance(120 * S);
    assert.equal(c.lock.log.length, calls);
    assert.equal(c.started, 1);
    assert.equal(c.stopped, 1);
  });
});
