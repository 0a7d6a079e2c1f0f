/**
 * Issue #9, "stopping never waits on I/O": ending leadership aborts the work at once and abandons the
 * lock call in flight, also when the lock ignores its abort signal (the double here never settles).
 * LD 15s, RD 10s, RP 2s.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ElectionEvent } from "../../src/election/events.js";
import { Candidate, S, StuckLock, newEnv } from "./harness.js";

function abandoned(events: ElectionEvent[]): string[] {
  return events.flatMap((e) => (e.type === "call_abandoned" ? [`${e.phase}:${e.op}`] : []));
}

describe("a lock call that never settles cannot delay a stop", () => {
  test("renew deadline: the work is aborted at lastRenewSent + RD and run returns, the stuck renewal abandoned", async () => {
    const env = newEnv();
    let stuck: StuckLock | undefined;
    const c = new Candidate(env, "baz", { wrapLock: (lock) => (stuck = new StuckLock(lock)) });
    const h = c.run();
    await env.clock.advanceTo(3 * S); // acquired at 0, renewed at 2s
    stuck?.stick();
    await env.clock.advanceTo(12 * S - 1);
    assert.equal(c.leading, true);
    await env.clock.advance(1);
    assert.equal(c.leading, false, "the work was not aborted at the deadline");
    assert.equal(c.abortedAt, 12 * S);
    await env.clock.runUntil(() => h.settled, 1, "run to return right after the deadline");
    assert.equal(c.stopped, 1);
    assert.ok((stuck?.stuckCalls.length ?? 0) >= 1);
    assert.deepEqual(abandoned(c.electionEvents), ["renew:update"]);
    const lost = c.electionEvents.find((e) => e.type === "lost");
    assert.equal(lost?.type === "lost" ? lost.reason : undefined, "deadline");
  });

  test("cancel while a renewal hangs: the work is aborted at once and run returns", async () => {
    const env = newEnv();
    let stuck: StuckLock | undefined;
    const c = new Candidate(env, "baz", { wrapLock: (lock) => (stuck = new StuckLock(lock)) });
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    stuck?.stick();
    await env.clock.advanceTo(4500); // the renewal of 4s hangs
    assert.deepEqual(stuck?.stuckCalls, ["update"]);
    h.controller.abort();
    assert.equal(c.leading, false, "abort must reach the work synchronously");
    assert.equal(c.abortedAt, 4500);
    await env.clock.runUntil(() => h.settled, 1, "run to return at once");
    assert.deepEqual(abandoned(c.electionEvents), ["renew:update"]);
  });

  test("cancel while campaigning with a hung get: run returns at once", async () => {
    const env = newEnv();
    env.store.put({
      holderIdentity: "bing",
      leaseDurationSeconds: 15,
      acquireTime: env.clock.wallNow(),
      renewTime: env.clock.wallNow(),
      leaderTransitions: 0,
    });
    let stuck: StuckLock | undefined;
    const c = new Candidate(env, "baz", { wrapLock: (lock) => (stuck = new StuckLock(lock)) });
    stuck?.stick("get");
    const h = c.run();
    await env.clock.advanceTo(5 * S);
    assert.deepEqual(stuck?.stuckCalls, ["get"]);
    h.controller.abort();
    await env.clock.runUntil(() => h.settled, 1, "run to return at once");
    assert.equal(h.settledAt, 5 * S);
    assert.equal(c.started, 0);
    assert.equal(c.stopped, 1);
    assert.deepEqual(abandoned(c.electionEvents), ["acquire:get"]);
  });

  test("release keeps its bounded timeout (RD) when the lock never answers", async () => {
    const env = newEnv();
    let stuck: StuckLock | undefined;
    const c = new Candidate(env, "baz", { releaseOnCancel: true, wrapLock: (lock) => (stuck = new StuckLock(lock)) });
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    stuck?.stick("get");
    h.controller.abort();
    await env.clock.runUntil(() => h.settled, 20 * S, "run to return after the release timeout");
    assert.equal(h.settledAt, 3 * S + 10 * S);
    assert.deepEqual(abandoned(c.electionEvents), ["release:get"]);
    assert.ok(c.electionEvents.some((e) => e.type === "release_failed"));
    assert.equal(env.store.read()?.holderIdentity, "baz", "not released: the lease is left to expire");
  });

  test("a lock that honours its signal still has the call abandoned at once (and reported)", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    c.lock.fail("all", "hang");
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    assert.equal(c.abortedAt, 12 * S);
    assert.equal(c.lock.hangingCalls, 0);
    assert.deepEqual(abandoned(c.electionEvents), ["renew:update"]);
  });
});
