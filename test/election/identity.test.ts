/**
 * Issue #9, identity and record rules (D9, D10 in docs/election.md): a record naming our identity that
 * this process did not write is foreign until unchanged for its lease duration; a deleted lease is not
 * re-created at once, and never with a term below one seen. LD 15s, RD 10s, RP 2s unless stated.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { ElectionEvent } from "../../src/election/events.js";
import { Candidate, S, StuckLock, abortAndWait, newEnv, record, wallAt } from "./harness.js";

function ofType<T extends ElectionEvent["type"]>(events: ElectionEvent[], type: T): Extract<ElectionEvent, { type: T }>[] {
  return events.filter((e): e is Extract<ElectionEvent, { type: T }> => e.type === type);
}

describe("D9: a record naming our identity that we did not write", () => {
  test("a restart with the same identity right after a SIGKILL waits until the record is unchanged for its lease duration", async () => {
    const env = newEnv();
    // The killed predecessor renewed at 0; its child may run until it is certainly dead.
    env.store.put(record({ holderIdentity: "baz", leaseDurationSeconds: 15, renewTime: wallAt(0), leaderTransitions: 3 }));
    await env.clock.advanceTo(1 * S);
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(16 * S - 1);
    assert.equal(c.started, 0, `took over at ${c.startedAt}ms, while the predecessor's work may still run`);
    assert.deepEqual(c.lock.calls.filter((op) => op !== "get"), []);
    const notices = ofType(c.electionEvents, "identity_in_use");
    assert.equal(notices.length, 1, "reported once, not at every retry");
    assert.equal(notices[0]?.identity, "baz");
    assert.equal(notices[0]?.waitMs, 15 * S);
    await env.clock.runUntil(() => c.started === 1, 5 * S, "takeover once unchanged for its lease duration");
    assert.ok((c.startedAt ?? 0) >= 16 * S);
    assert.equal(env.store.read()?.leaderTransitions, 4, "D7: a new term");
    assert.equal(c.le.term(), 4);
    await abortAndWait(env, h);
  });

  test("two live processes sharing an identity never both lead", async () => {
    const env = newEnv();
    const a = new Candidate(env, "baz");
    const ha = a.run();
    await env.clock.advanceTo(1 * S);
    assert.equal(a.leading, true);
    const b = new Candidate(env, "baz");
    const hb = b.run();
    await env.clock.advanceTo(90 * S);
    assert.equal(b.started, 0, "the second process with the same identity took the lease");
    assert.equal(a.leading, true);
    assert.equal(a.stopped, 0);
    assert.ok(ofType(b.electionEvents, "identity_in_use").length >= 1);
    await abortAndWait(env, hb);
    await abortAndWait(env, ha);
  });

  test("case 15 adapted (D9): while leading, our record rewritten by another process ends leadership at once", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { name: "foo" });
    const h = c.run();
    await env.clock.flush();
    await env.clock.advanceTo(1 * S);
    env.store.put({ ...(env.store.read() ?? record({ holderIdentity: "baz" })), renewTime: wallAt(1 * S) });
    const mark = c.lock.log.length;
    await env.clock.advanceTo(2 * S);
    assert.deepEqual(c.callsSince(mark), ["update", "get"], "no write over the other process's record");
    assert.equal(c.leading, false);
    assert.equal(c.abortedAt, 2 * S);
    const lost = ofType(c.electionEvents, "lost");
    assert.deepEqual(lost.map((e) => [e.reason, e.holder]), [["foreign_holder", "baz"]]);
    await env.clock.runUntil(() => h.settled, 1 * S, "run to end");
  });

  test("our own write read back (also one whose answer was lost) is ours: the same process takes it at once", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    c.lock.fail("create", { error: new Error("response lost"), afterApply: true }, 1);
    const h = c.run();
    await env.clock.advance(1);
    assert.equal(c.started, 0, "the create's outcome is unknown");
    assert.equal(env.store.read()?.holderIdentity, "baz");
    await env.clock.runUntil(() => c.started === 1, 5 * S, "acquisition at the next attempt");
    assert.ok((c.startedAt ?? Infinity) < 5 * S);
    assert.deepEqual(ofType(c.electionEvents, "identity_in_use"), []);
    assert.equal(c.le.term(), 1);
    await abortAndWait(env, h);
  });

  test("a lock that guards our identity itself (the file lock) gets the update and decides", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "baz", leaseDurationSeconds: 15, renewTime: wallAt(0), leaderTransitions: 3 }));
    const c = new Candidate(env, "baz", {
      wrapLock: (lock) => {
        const wrapped = new StuckLock(lock);
        wrapped.guardsOwnIdentity = true;
        return wrapped;
      },
    });
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.deepEqual(c.lock.calls, ["get", "update"]);
    assert.deepEqual(ofType(c.electionEvents, "identity_in_use"), []);
  });

  test("release never clears a record naming us that another process wrote", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { releaseOnCancel: true, workStopDelay: 1 * S });
    const h = c.run();
    await env.clock.advanceTo(3 * S);
    h.controller.abort();
    // While our work stops, a process sharing our identity writes the record.
    env.store.put(record({ holderIdentity: "baz", renewTime: wallAt(3500), leaderTransitions: 9 }));
    await env.clock.runUntil(() => h.settled, 20 * S, "run to end");
    assert.equal(env.store.read()?.holderIdentity, "baz");
    assert.equal(env.store.read()?.leaderTransitions, 9);
    assert.equal(ofType(c.electionEvents, "released").length, 0);
  });
});

describe("D10: a deleted lease", () => {
  test("a candidate that saw the record waits a lease duration from the deletion, then re-creates it with the highest term + 1", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, renewTime: wallAt(0), leaderTransitions: 7 }));
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advanceTo(5 * S);
    env.store.delete();
    await env.clock.advanceTo(7 * S);
    const deleted = ofType(c.electionEvents, "lease_deleted");
    assert.equal(deleted.length, 1);
    assert.equal(deleted[0]?.leading, false);
    assert.equal(deleted[0]?.recreateInMs, 15 * S);
    const firstNotFound = c.lock.log.find((x) => x.op === "get" && x.start >= 5 * S)?.start ?? 0;
    assert.ok(firstNotFound > 5 * S && firstNotFound <= 7 * S, `first NotFound at ${firstNotFound}`);
    await env.clock.advanceTo(firstNotFound + 15 * S - 1);
    assert.equal(c.started, 0, `re-created the deleted lease at ${c.startedAt}ms`);
    assert.equal(env.store.read(), undefined);
    await env.clock.runUntil(() => c.started === 1, 5 * S, "re-creation a lease duration after the deletion");
    assert.equal(env.store.read()?.leaderTransitions, 8, "the token never goes back");
    assert.equal(c.le.term(), 8);
    await abortAndWait(env, h);
  });

  test("a candidate that never saw a record creates it at once with term 0", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz");
    const h = c.run();
    await env.clock.advance(1);
    assert.equal(c.started, 1);
    assert.equal(c.le.term(), 0);
    assert.deepEqual(ofType(c.electionEvents, "lease_deleted"), []);
    await abortAndWait(env, h);
  });

  test("a deletion under the leader: it re-creates the lease with its term; a candidate that saw the record never leads meanwhile", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, leaderTransitions: 5 }));
    const leader = new Candidate(env, "baz");
    const hl = leader.run();
    await env.clock.advanceTo(1 * S);
    assert.equal(leader.le.term(), 6);
    const other = new Candidate(env, "bing");
    assert.equal(await other.le.tryAcquireOrRenew(), false, "sees baz's valid lease");
    env.store.delete();
    // The candidate looks first: before the leader's next renewal.
    assert.equal(await other.le.tryAcquireOrRenew(), false, "re-created the lease at once while baz still leads");
    await env.clock.advanceTo(3 * S);
    assert.equal(env.store.read()?.holderIdentity, "baz");
    assert.equal(env.store.read()?.leaderTransitions, 6, "re-created with the leader's term");
    assert.equal(leader.leading, true);
    assert.equal(ofType(leader.electionEvents, "lease_deleted")[0]?.leading, true);
    for (let t = 4 * S; t <= 40 * S; t += 2 * S) {
      await env.clock.advanceTo(t);
      assert.equal(await other.le.tryAcquireOrRenew(), false, `bing took the lease at ${t}ms`);
    }
    assert.equal(leader.le.term(), 6);
    await abortAndWait(env, hl);
  });

  test("taking over a re-created record with a lower term continues from the highest term seen", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, renewTime: wallAt(0), leaderTransitions: 7 }));
    const c = new Candidate(env, "baz");
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    env.store.delete();
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, leaderTransitions: 0 })); // data lost, released
    await env.clock.advanceTo(2 * S);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.equal(c.le.term(), 8);
    assert.equal(env.store.read()?.leaderTransitions, 8);
  });
});
