/**
 * Releasing the lease when leadership ends (reference cases 28–32 and the release part of 37;
 * deviation D5: write the released record only if the freshly read holder is us, with CAS,
 * retrying conflicts within renewDeadline). LD 15s, RD 10s, RP 2s.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ConflictError } from "../../src/election/lock.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import { Candidate, S, abortAndWait, newEnv, record, wallAt } from "./harness.js";
import type { Env } from "./harness.js";

const CANCEL_AT = 10_500; // between the renewals at 10s and 12s

async function leaderWithFollower(env: Env, releaseOnCancel: boolean): Promise<{ baz: Candidate; bing: Candidate; bazRun: ReturnType<Candidate["run"]>; bingRun: ReturnType<Candidate["run"]> }> {
  const baz = new Candidate(env, "baz", { releaseOnCancel });
  const bazRun = baz.run();
  await env.clock.flush();
  assert.equal(baz.started, 1);
  const bing = new Candidate(env, "bing");
  const bingRun = bing.run();
  await env.clock.advanceTo(CANCEL_AT);
  assert.equal(bing.started, 0);
  return { baz, bing, bazRun, bingRun };
}

function releasedWrites(env: Env): LeaderElectionRecord[] {
  return env.store.history.flatMap((h) => (h.record !== undefined && h.record.holderIdentity === "" ? [h.record] : []));
}

describe("release", () => {
  test("case 28: a cancelled leader with releaseOnCancel reads, then writes the released record, and a follower takes over within 2.2 RP", async () => {
    const env = newEnv();
    const { baz, bing, bazRun, bingRun } = await leaderWithFollower(env, true);
    const mark = baz.lock.log.length;
    await abortAndWait(env, bazRun, 1);
    assert.deepEqual(baz.callsSince(mark), ["get", "update"]);
    const releaseAt = baz.lock.log[mark + 1]?.start ?? NaN;
    const released = releasedWrites(env);
    assert.deepEqual(released, [
      { holderIdentity: "", leaseDurationSeconds: 1, acquireTime: wallAt(releaseAt), renewTime: wallAt(releaseAt), leaderTransitions: 0 },
    ]);
    assert.deepEqual(baz.lock.events, ["Normal LeaderElection baz became leader", "Normal LeaderElection baz stopped leading"]);
    assert.equal(baz.le.getLeader(), "");
    assert.equal(baz.le.isLeader(), false);
    await env.clock.runUntil(() => bing.started === 1, 4400, "follower to take the released lease");
    assert.equal(env.store.read()?.holderIdentity, "bing");
    assert.equal(env.store.read()?.leaderTransitions, 1);
    await abortAndWait(env, bingRun);
  });

  test("case 37 (release part): the released record keeps an explicit empty holderIdentity", async () => {
    const env = newEnv();
    const baz = new Candidate(env, "baz", { releaseOnCancel: true });
    const h = baz.run();
    await env.clock.advanceTo(CANCEL_AT);
    await abortAndWait(env, h, 1);
    const raw = env.store.raw() ?? "";
    assert.match(raw, /"holderIdentity":""/);
    assert.match(raw, /"leaseDurationSeconds":1/);
    assert.doesNotMatch(raw, /strategy|preferredHolder/);
  });

  test("case 29: without releaseOnCancel the record is untouched and a follower waits a full lease after its last observed change", async () => {
    const env = newEnv();
    const { baz, bing, bazRun, bingRun } = await leaderWithFollower(env, false);
    const version = env.store.version;
    await abortAndWait(env, bazRun, 1);
    assert.equal(env.store.version, version, "nothing written after cancel");
    assert.equal(env.store.read()?.holderIdentity, "baz");
    const lastWrite = Math.max(...baz.lock.log.filter((c) => c.op !== "get").map((c) => c.start));
    await env.clock.runUntil(() => bing.started === 1, 40 * S, "follower to take the expired lease");
    const firstSeen = bing.lock.log.find((c) => c.op === "get" && c.start >= lastWrite)?.start ?? NaN;
    const takenAt = bing.startedAt ?? NaN;
    assert.ok(takenAt >= firstSeen + 15 * S, `taken at ${takenAt}ms, last change first seen at ${firstSeen}ms`);
    assert.ok(takenAt <= lastWrite + 15 * S + 2 * 4400, `taken at ${takenAt}ms, last write at ${lastWrite}ms`);
    assert.equal(env.store.read()?.leaderTransitions, 1);
    await abortAndWait(env, bingRun);
  });

  test("case 30: a release that conflicts once re-reads and writes again", async () => {
    const env = newEnv();
    const baz = new Candidate(env, "baz", { releaseOnCancel: true });
    const h = baz.run();
    await env.clock.advanceTo(CANCEL_AT);
    const mark = baz.lock.log.length;
    baz.lock.fail("update", new ConflictError("the object has been modified"), 1);
    await abortAndWait(env, h, 10 * S);
    assert.deepEqual(baz.callsSince(mark), ["get", "update", "get", "update"]);
    assert.equal(env.store.read()?.holderIdentity, "");
    assert.equal(baz.le.getLeader(), "");
  });

  test("case 31: a release that finds the lease deleted writes nothing", async () => {
    const env = newEnv();
    const baz = new Candidate(env, "baz", { releaseOnCancel: true });
    const h = baz.run();
    await env.clock.advanceTo(CANCEL_AT);
    env.store.delete();
    const mark = baz.lock.log.length;
    await abortAndWait(env, h, 10 * S);
    assert.deepEqual(baz.callsSince(mark), ["get"]);
    assert.equal(env.store.read(), undefined, "not re-created");
    assert.equal(baz.stopped, 1);
  });

  test("case 31 adapted (D5): a release whose fresh read shows another holder writes nothing", async () => {
    const env = newEnv();
    const baz = new Candidate(env, "baz", { releaseOnCancel: true });
    const h = baz.run();
    await env.clock.advanceTo(CANCEL_AT);
    // The last record baz observed names baz; the fresh read at release time names bing.
    env.store.put(record({ holderIdentity: "bing", leaseDurationSeconds: 15, leaderTransitions: 1, renewTime: wallAt(CANCEL_AT) }));
    const version = env.store.version;
    const mark = baz.lock.log.length;
    await abortAndWait(env, h, 10 * S);
    assert.deepEqual(baz.callsSince(mark), ["get"]);
    assert.equal(env.store.version, version);
    assert.equal(env.store.read()?.holderIdentity, "bing");
  });

  test("case 32: a release against a store that never answers gives up within renewDeadline and run still ends", async () => {
    const env = newEnv();
    const baz = new Candidate(env, "baz", { releaseOnCancel: true });
    const h = baz.run();
    await env.clock.advanceTo(CANCEL_AT);
    baz.lock.fail("all", "hang");
    await abortAndWait(env, h, 10 * S);
    assert.ok((h.settledAt ?? Infinity) <= CANCEL_AT + 10 * S, `run ended at ${h.settledAt}ms`);
    assert.equal(baz.stopped, 1);
    assert.equal(baz.lock.hangingCalls, 0, "the hung request was aborted, not leaked");
    assert.equal(env.store.read()?.holderIdentity, "baz", "left to expire");
  });

  test("D5: release retries conflicts only until renewDeadline", async () => {
    const env = newEnv();
    const baz = new Candidate(env, "baz", { releaseOnCancel: true, lock: { latency: { get: 100, update: 100 } } });
    const h = baz.run();
    await env.clock.advanceTo(CANCEL_AT);
    const mark = baz.lock.log.length;
    baz.lock.fail("update", new ConflictError("the object has been modified"));
    await abortAndWait(env, h, 10 * S + 200);
    const after = baz.callsSince(mark);
    assert.ok(after.filter((op) => op === "update").length >= 2, `retried: ${after.join(",")}`);
    assert.equal(env.store.read()?.holderIdentity, "baz");
    assert.equal(baz.stopped, 1);
  });
});
