/**
 * Single attempts of `tryAcquireOrRenew` (reference cases 8–13 and 16–21; 14 and 15 are renewals and
 * live in loops.test.ts). LD 10s unless stated.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, LockError } from "../../src/election/lock.js";
import { emptyRecord } from "../../src/election/record.js";
import { Candidate, S, abortAndWait, newEnv, record, wallAt } from "./harness.js";
import type { CandidateOptions, Env } from "./harness.js";

const LD10: CandidateOptions = { leaseDuration: 10 * S, renewDeadline: 5 * S, retryPeriod: 2 * S };

function baz(env: Env, options: CandidateOptions = LD10): Candidate {
  return new Candidate(env, "baz", options);
}

describe("tryAcquireOrRenew, one attempt at a time", () => {
  test("case 8: a missing lease is created with transitions 0 in exactly get + create", async () => {
    const env = newEnv();
    const c = baz(env);
    await env.clock.advance(1234);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.deepEqual(c.lock.calls, ["get", "create"]);
    assert.deepEqual(env.store.read(), {
      holderIdentity: "baz",
      leaseDurationSeconds: 10,
      acquireTime: wallAt(1234),
      renewTime: wallAt(1234),
      leaderTransitions: 0,
    });
    assert.equal(c.le.isLeader(), true);
    assert.equal(c.le.getLeader(), "baz");
    assert.equal(c.le.term(), 0);
  });

  test("case 8: run reports onNewLeader(self) exactly once after creating the lease", async () => {
    const env = newEnv();
    const c = baz(env);
    const h = c.run();
    await env.clock.flush();
    assert.equal(c.started, 1);
    assert.deepEqual(c.newLeaders, ["baz"]);
    await env.clock.advance(5 * S);
    assert.deepEqual(c.newLeaders, ["baz"], "renewals do not report the same leader again");
    await abortAndWait(env, h);
  });

  test("case 9: an existing lease with an empty record is taken with transitions 1 in get + update", async () => {
    const env = newEnv();
    env.store.put(emptyRecord());
    const c = baz(env);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.deepEqual(c.lock.calls, ["get", "update"]);
    const r = env.store.read();
    assert.equal(r?.holderIdentity, "baz");
    assert.equal(r?.leaderTransitions, 1);
    assert.equal(r?.leaseDurationSeconds, 10);
    assert.deepEqual(r?.acquireTime, wallAt(0));
    assert.equal(c.le.term(), 1);
  });

  test("case 10: a valid foreign lease is not taken on first sight, and is taken once unchanged for its published duration", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 3, leaderTransitions: 0 }));
    const c = baz(env);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    assert.deepEqual(c.lock.calls, ["get"]);
    assert.equal(c.le.getLeader(), "bing");
    assert.equal(c.le.isLeader(), false);
    await env.clock.advance(3100);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.deepEqual(c.lock.calls, ["get", "get", "update"]);
    assert.equal(env.store.read()?.leaderTransitions, 1);
    assert.equal(env.store.read()?.holderIdentity, "baz");
    assert.deepEqual(env.store.read()?.acquireTime, wallAt(3100));
  });

  test("case 10: run reports onNewLeader(bing) after the first attempt that observes bing", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 3600 }));
    const c = baz(env);
    const h = c.run();
    await env.clock.flush();
    assert.deepEqual(c.newLeaders, ["bing"]);
    await env.clock.advance(20 * S);
    assert.deepEqual(c.newLeaders, ["bing"]);
    assert.equal(c.started, 0);
    await abortAndWait(env, h);
  });

  test("case 11: a foreign lease observed unchanged 1000h ago is taken with transitions +1", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 10, leaderTransitions: 6 }));
    const c = baz(env);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advance(1000 * 3600 * S);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.deepEqual(c.lock.calls, ["get", "get", "update"]);
    assert.equal(env.store.read()?.leaderTransitions, 7);
    assert.equal(c.le.term(), 7);
  });

  test("case 12: a released lease (empty holder) is taken at first sight with transitions +1", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, leaderTransitions: 4 }));
    const c = baz(env);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.deepEqual(c.lock.calls, ["get", "update"]);
    assert.equal(env.store.read()?.leaderTransitions, 5);
  });

  test("case 12: a lease released while the foreign holder's lease still looked valid is taken at once", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 60, leaderTransitions: 2 }));
    const c = baz(env);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advance(1 * S);
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, leaderTransitions: 2, renewTime: wallAt(1 * S) }));
    await env.clock.advance(500);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.equal(env.store.read()?.holderIdentity, "baz");
    assert.equal(env.store.read()?.leaderTransitions, 3);
  });

  test("case 13: a foreign lease that changed since the last look is not taken and nothing is written", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 10 }));
    const c = baz(env);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advance(20 * S);
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 10, renewTime: wallAt(20 * S) }));
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    assert.deepEqual(c.lock.calls, ["get", "get"]);
    assert.equal(env.store.read()?.holderIdentity, "bing");
  });

  test("case 16 adapted (D7, D9): a restarted process with the same identity re-acquires as a new term once the record sat unchanged for its lease duration", async () => {
    const env = newEnv();
    const acquired = new Date("2024-04-30T00:00:00Z");
    env.store.put(record({ holderIdentity: "baz", leaseDurationSeconds: 10, acquireTime: acquired, renewTime: wallAt(0), leaderTransitions: 3 }));
    await env.clock.advance(1 * S);
    const c = baz(env);
    // Not written by this process: its writer's work may still run (D9).
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advanceTo(11 * S - 1);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advanceTo(11 * S);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.deepEqual(c.lock.calls, ["get", "get", "get", "update"]);
    const r = env.store.read();
    assert.equal(r?.holderIdentity, "baz");
    assert.equal(r?.leaderTransitions, 4, "an acquisition, not a renewal: transitions +1");
    assert.deepEqual(r?.acquireTime, wallAt(11 * S), "acquireTime is the new term's start");
    assert.equal(c.le.term(), 4);
    assert.deepEqual(c.entries("metric:slowpath"), [], "an acquisition is not a slow-path renewal");
  });

  test("case 17: a failing get returns false, writes nothing and keeps the observed state", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 10 }));
    const c = baz(env);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    c.lock.fail("get", new LockError("connection refused"), 1);
    await env.clock.advance(2 * S);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    assert.deepEqual(c.lock.calls, ["get", "get"]);
    assert.equal(c.le.getLeader(), "bing");
    assert.equal(c.le.isLeader(), false);
    // The failed read did not count as an observation: the lease expires 10s after the first one.
    await env.clock.advance(8100);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
  });

  test("case 18: losing the create race returns false and the next attempt starts with a get", async () => {
    const env = newEnv();
    const c = baz(env);
    c.lock.onCall = (op) => {
      // A peer creates the lease between our get and our create.
      if (op === "create") env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 10 }));
    };
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    assert.deepEqual(c.lock.calls, ["get", "create"]);
    assert.equal(c.lock.log[1]?.outcome, "error");
    c.lock.onCall = undefined;
    await env.clock.advance(2 * S);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    assert.deepEqual(c.lock.calls, ["get", "create", "get"]);
    assert.equal(c.le.getLeader(), "bing");
  });

  test("case 18: an AlreadyExists error from create is a plain failed attempt", async () => {
    const env = newEnv();
    const c = baz(env);
    c.lock.fail("create", new AlreadyExistsError("lease foo/bar already exists"), 1);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    assert.equal(c.le.isLeader(), false);
    await env.clock.advance(2 * S);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.deepEqual(c.lock.calls, ["get", "create", "get", "create"]);
  });

  test("case 19: a follower waits for the holder's published duration (60s), not its own (5s)", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 60 }));
    const c = baz(env, { leaseDuration: 5 * S, renewDeadline: 3 * S, retryPeriod: 1 * S });
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advanceTo(6 * S);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advanceTo(59_900);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advanceTo(60_100);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.equal(env.store.read()?.leaseDurationSeconds, 5, "the writer stamps its own duration");
  });

  for (const [label, skewMs] of [["behind", -3600 * S], ["ahead", 3600 * S]] as const) {
    test(`case 20: a holder whose wall clock is 1h ${label} is judged by observed change only`, async () => {
      const env = newEnv();
      const { clock, store } = env;
      const write = (): void => {
        store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, renewTime: new Date(clock.wallNow().getTime() + skewMs) }));
      };
      let lastWrite = 0;
      write();
      let beating = true;
      const beat = (): void => {
        if (!beating) return;
        lastWrite = clock.now();
        write();
        clock.setTimer(beat, 2 * S);
      };
      clock.setTimer(beat, 2 * S);
      const c = baz(env, { leaseDuration: 15 * S, renewDeadline: 10 * S, retryPeriod: 2 * S });
      // Attempts every 0.7s (never in step with the holder's 2s beat), for two minutes.
      const attempts: number[] = [];
      let t = 500;
      for (; t < 120 * S; t += 700) {
        await clock.advanceTo(t);
        attempts.push(t);
        assert.equal(await c.le.tryAcquireOrRenew(), false, `took a renewed lease at ${t}ms`);
      }
      beating = false; // the holder dies
      let acquiredAt: number | undefined;
      for (; t < 200 * S && acquiredAt === undefined; t += 700) {
        await clock.advanceTo(t);
        attempts.push(t);
        if (await c.le.tryAcquireOrRenew()) acquiredAt = t;
      }
      const firstSeen = attempts.find((a) => a >= lastWrite) ?? NaN;
      assert.ok(acquiredAt !== undefined, "never acquired after the holder died");
      assert.ok(
        acquiredAt > firstSeen + 15 * S && acquiredAt <= firstSeen + 15 * S + 700,
        `acquired at ${acquiredAt}ms; last change first seen at ${firstSeen}ms`,
      );
    });
  }

  test("case 20: a record with an ancient renewTime still needs a full lease of unchanged observation", async () => {
    const env = newEnv();
    const yearAgo = new Date(WALL_YEAR_AGO);
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, acquireTime: yearAgo, renewTime: yearAgo }));
    const c = baz(env, { leaseDuration: 15 * S, renewDeadline: 10 * S, retryPeriod: 2 * S });
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advanceTo(14_900);
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    await env.clock.advanceTo(15_100);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
  });

  test("case 21: a byte-identical record (only sub-second rewrites) is unchanged; the follower takes it after the lease", async () => {
    const env = newEnv();
    const { clock, store } = env;
    store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, renewTime: wallAt(0) }));
    const c = baz(env, { leaseDuration: 15 * S, renewDeadline: 10 * S, retryPeriod: 2 * S });
    assert.equal(await c.le.tryAcquireOrRenew(), false);
    for (let k = 1; k <= 7; k++) {
      await clock.advanceTo(k * 2 * S);
      // Rewritten (new version) but only milliseconds differ: invisible at whole-second precision.
      store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, renewTime: wallAt(k) }));
      assert.equal(await c.le.tryAcquireOrRenew(), false);
    }
    await clock.advanceTo(15_100);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
  });

  test("case 21: a follower never takes a lease that changes every 2s, over a whole hour", async () => {
    const env = newEnv();
    const { clock, store } = env;
    let n = 0;
    const beat = (): void => {
      n += 1;
      store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, renewTime: clock.wallNow() }));
      clock.setTimer(beat, 2 * S);
    };
    beat();
    const c = baz(env, { leaseDuration: 15 * S, renewDeadline: 10 * S, retryPeriod: 2 * S });
    const h = c.run();
    await clock.advance(3600 * S);
    assert.equal(c.started, 0);
    assert.equal(store.read()?.holderIdentity, "bing");
    assert.ok(n > 1700, `holder beat ${n} times`);
    assert.ok(c.lock.calls.filter((op) => op === "get").length > 700, "the follower kept trying");
    assert.deepEqual(c.lock.calls.filter((op) => op !== "get"), [], "the follower never wrote");
    await abortAndWait(env, h);
  });

  test("a takeover clears coordinated-election fields (strategy, preferredHolder)", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "", leaseDurationSeconds: 1, strategy: "OldestEmulationVersion", preferredHolder: "qux" }));
    const c = baz(env);
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    const r = env.store.read();
    assert.equal(r?.strategy, undefined);
    assert.equal(r?.preferredHolder, undefined);
  });
});

const WALL_YEAR_AGO = "2023-05-01T12:00:00Z";
