/**
 * Callbacks and their order (reference cases 33 and 34; deviation D4: abort the leading signal, wait
 * for the work to settle, release, emit `stopped leading`, call onStoppedLeading).
 * LD 15s, RD 10s, RP 2s.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LockError } from "../../src/election/lock.js";
import { Candidate, S, abortAndWait, newEnv, record } from "./harness.js";

const CANCEL_AT = 10_500;

/** The hand-over part of a timeline, without metrics and leader notifications. */
function handover(c: Candidate): string[] {
  const from = c.timeline.indexOf("work:aborted");
  return c.timeline.slice(from).filter((e) => !e.startsWith("metric:") && !e.startsWith("newLeader:"));
}

describe("callbacks", () => {
  test("case 33: onNewLeader fires once per distinct observed holder, including an empty one and self", async () => {
    const env = newEnv();
    const { clock, store } = env;
    let bazBeats = true;
    const beat = (): void => {
      if (!bazBeats) return;
      store.put(record({ holderIdentity: "baz", leaseDurationSeconds: 15, renewTime: clock.wallNow() }));
      clock.setTimer(beat, 2 * S);
    };
    beat();
    const bing = new Candidate(env, "bing");
    const h = bing.run();
    await clock.advance(20 * S);
    assert.deepEqual(bing.newLeaders, ["baz"], "repeated renewals by the same holder are reported once");
    // baz releases; when bing tries to take it, qux wins the race.
    bazBeats = false;
    store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, renewTime: clock.wallNow() }));
    const prev = bing.lock.onCall;
    bing.lock.onCall = (op, n) => {
      prev?.(op, n);
      if (op === "update" && store.read()?.holderIdentity === "") {
        store.put(record({ holderIdentity: "qux", leaseDurationSeconds: 15, leaderTransitions: 1, renewTime: clock.wallNow() }));
      }
    };
    await clock.runUntil(() => bing.newLeaders.length >= 2, 5 * S, "bing to report the released lease");
    assert.deepEqual(bing.newLeaders, ["baz", ""]);
    await clock.runUntil(() => bing.newLeaders.length >= 3, 5 * S, "bing to report qux");
    assert.deepEqual(bing.newLeaders, ["baz", "", "qux"]);
    // qux never renews; bing takes over and reports itself.
    await clock.runUntil(() => bing.started === 1, 30 * S, "bing to lead");
    await clock.flush();
    assert.deepEqual(bing.newLeaders, ["baz", "", "qux", "bing"]);
    await abortAndWait(env, h);
  });

  test("the became-leader event and gauge precede onStartedLeading", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { name: "foo" });
    const h = c.run();
    await env.clock.flush();
    const started = c.timeline.indexOf("started");
    assert.ok(started > 0);
    assert.ok(c.timeline.indexOf("event:became leader") < started, c.timeline.join(" "));
    assert.ok(c.timeline.indexOf("metric:leaderOn:foo") < started, c.timeline.join(" "));
    assert.ok(c.timeline.indexOf("lock:create") < started);
    await abortAndWait(env, h);
  });

  test("case 34 adapted (D4): after a renew failure the signal aborts, the work settles, then release, event, onStoppedLeading", async () => {
    const env = newEnv();
    const c: Candidate = new Candidate(env, "baz", {
      releaseOnCancel: true,
      work: (signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener("abort", () => {
            c.lock.clearFailures(); // the store recovers just as leadership is lost
            env.clock.setTimer(resolve, 1 * S);
          });
        }),
    });
    const h = c.run();
    await env.clock.advanceTo(3 * S); // last successful renewal sent at 2s
    c.lock.fail("all", new LockError("connect ECONNREFUSED"));
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    assert.equal(c.abortedAt, 12 * S);
    assert.equal(c.workSettledAt, 13 * S);
    assert.deepEqual(handover(c), ["work:aborted", "work:settled", "lock:get", "lock:update", "event:stopped leading", "stopped"]);
    assert.equal(env.store.read()?.holderIdentity, "");
  });

  test("D4: a cancelled leader waits for its work to stop before releasing", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { releaseOnCancel: true, workStopDelay: 3 * S });
    const h = c.run();
    await env.clock.advanceTo(CANCEL_AT);
    const version = env.store.version;
    h.controller.abort();
    await env.clock.advance(3 * S - 1);
    assert.equal(c.abortedAt, CANCEL_AT, "the leading signal aborts at once");
    assert.equal(env.store.version, version, "nothing written while the work still runs");
    assert.equal(env.store.read()?.holderIdentity, "baz");
    assert.equal(c.stopped, 0);
    await env.clock.runUntil(() => h.settled, 1 * S, "run to end");
    assert.deepEqual(handover(c), ["work:aborted", "work:settled", "lock:get", "lock:update", "event:stopped leading", "stopped"]);
    assert.equal(env.store.read()?.holderIdentity, "");
  });

  test("D4: work that rejects when aborted counts as settled and the lease is released", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { releaseOnCancel: true, workStopDelay: 500, workRejects: true });
    const h = c.run();
    await env.clock.advanceTo(CANCEL_AT);
    await abortAndWait(env, h, 5 * S);
    assert.equal(h.error, undefined, "run resolves");
    assert.deepEqual(handover(c), ["work:aborted", "work:settled", "lock:get", "lock:update", "event:stopped leading", "stopped"]);
  });

  test("D4: work still running at lastRenewSent + leaseDuration is not released; run ends and onStoppedLeading runs", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { releaseOnCancel: true, workStopDelay: Infinity });
    const h = c.run();
    await env.clock.advanceTo(CANCEL_AT); // last renewal sent at 10s, so the safety deadline is 25s
    const version = env.store.version;
    const mark = c.lock.log.length;
    h.controller.abort();
    await env.clock.advanceTo(25 * S - 1);
    assert.equal(h.settled, false, "still waiting for the work");
    assert.equal(c.stopped, 0);
    await env.clock.runUntil(() => h.settled, 1 * S, "run to end at the safety deadline");
    assert.equal(c.stopped, 1);
    assert.equal(env.store.version, version, "lease left to expire, not released");
    assert.deepEqual(c.callsSince(mark).filter((op) => op !== "get"), [], "no renewal or release write after cancel");
    assert.equal(c.lock.events.at(-1), "Normal LeaderElection baz stopped leading");
    assert.ok(c.timeline.indexOf("event:stopped leading") < c.timeline.indexOf("stopped"));
  });

  test("onStoppedLeading runs exactly once, after the leading signal aborted", async () => {
    const env = newEnv();
    let abortedWhenStopped: boolean | undefined;
    const c: Candidate = new Candidate(env, "baz", { onStopped: () => (abortedWhenStopped = c.leadingSignal?.aborted) });
    const h = c.run();
    await env.clock.advanceTo(CANCEL_AT);
    await abortAndWait(env, h);
    await env.clock.advance(60 * S);
    assert.equal(c.stopped, 1);
    assert.equal(c.started, 1);
    assert.equal(abortedWhenStopped, true);
  });
});
