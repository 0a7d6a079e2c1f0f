/**
 * How often a waiting candidate reads the lease (issue #13): about once per lease duration while the
 * lock reports its watch connected, the retry period otherwise, and never a later take-over than the
 * retry-period poll would give.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Candidate, S, abortAndWait, newEnv, record, startsOf, type Env } from "./harness.js";

const LD = 15 * S;
const RP = 2 * S;

/** A holder that renews every RP by writing the store directly (announced unless `silent`), until stopped. */
function renewingHolder(env: Env, options: { silent?: boolean } = {}): { stop: () => void; lastWriteAt: () => number } {
  const { clock, store } = env;
  let stopped = false;
  let last = clock.now();
  const write = (): void => {
    store.put(record({ holderIdentity: "baz", leaseDurationSeconds: 15, renewTime: clock.wallNow() }), { announce: options.silent !== true });
    last = clock.now();
  };
  write();
  const beat = (): void => {
    if (stopped) return;
    write();
    clock.setTimer(beat, RP);
  };
  clock.setTimer(beat, RP);
  return { stop: () => (stopped = true), lastWriteAt: () => last };
}

describe("waiting candidates with a healthy watch", () => {
  test("read about once per lease duration while the holder renews, and write nothing", async () => {
    const env = newEnv();
    const holder = renewingHolder(env);
    const bing = new Candidate(env, "bing", { lock: { watchHealth: true } });
    const h = bing.run();
    await env.clock.advance(150 * S);
    const gets = startsOf(bing.lock, "get");
    // 150 s is 10 lease durations: one read each, plus the first one at start.
    assert.ok(gets.length >= 10 && gets.length <= 12, `reads: ${gets.length} at ${gets.join(", ")}`);
    for (let i = 2; i < gets.length; i++) assert.ok(gets[i]! - gets[i - 1]! >= LD - 1, `reads ${gets[i - 1]} and ${gets[i]} closer than LD`);
    assert.deepEqual(bing.lock.calls.filter((op) => op !== "get"), []);
    assert.equal(bing.started, 0);
    holder.stop();
    await abortAndWait(env, h);
  });

  test("the same candidate without watch health polls every retry period (unchanged behaviour)", async () => {
    const env = newEnv();
    const holder = renewingHolder(env);
    const bing = new Candidate(env, "bing");
    const h = bing.run();
    await env.clock.advance(150 * S);
    const gets = startsOf(bing.lock, "get");
    for (let i = 1; i < gets.length; i++) {
      const gap = gets[i]! - gets[i - 1]!;
      assert.ok(gap >= RP && gap < 2.2 * RP, `gap ${gap} outside [RP, 2.2·RP)`);
    }
    assert.ok(gets.length >= 150 / (2.2 * 2) && gets.length <= 76, `reads: ${gets.length}`);
    holder.stop();
    await abortAndWait(env, h);
  });

  test("a watch without health still wakes the candidate on every notification (unchanged behaviour)", async () => {
    const env = newEnv();
    const holder = renewingHolder(env);
    const bing = new Candidate(env, "bing", { lock: { watch: true } });
    const h = bing.run();
    await env.clock.advance(60 * S);
    // Every renewal (every RP) is a notification, and each one is read at once.
    const gets = startsOf(bing.lock, "get");
    assert.ok(gets.length >= 30, `reads: ${gets.length}`);
    holder.stop();
    await abortAndWait(env, h);
  });

  test("fall back to the retry period at once when the watch drops, and back once it is up", async () => {
    const env = newEnv();
    const holder = renewingHolder(env);
    const bing = new Candidate(env, "bing", { lock: { watchHealth: true } });
    const h = bing.run();
    await env.clock.advance(40 * S);
    const dropAt = env.clock.now();
    const lastBefore = startsOf(bing.lock, "get").at(-1)!;
    env.store.setWatchConnected(false);
    await env.clock.advance(30 * S);
    const during = startsOf(bing.lock, "get", dropAt);
    // The first poll is where the retry-period schedule would have put it: within 2.2·RP of the last
    // read, or at once if that is past already.
    assert.ok(during[0]! <= Math.max(dropAt, lastBefore + 2.2 * RP), `first read after the drop at ${during[0]}`);
    for (let i = 1; i < during.length; i++) assert.ok(during[i]! - during[i - 1]! < 2.2 * RP);
    assert.ok(during.length >= 30 / (2.2 * 2), `reads while disconnected: ${during.length}`);
    const upAt = env.clock.now();
    env.store.setWatchConnected(true);
    await env.clock.advance(60 * S);
    const after = startsOf(bing.lock, "get", upAt);
    // The reconnection wake reads once; then about one read per lease duration.
    assert.ok(after.length <= 6, `reads after reconnecting: ${after.length} at ${after.join(", ")}`);
    assert.equal(bing.started, 0);
    holder.stop();
    await abortAndWait(env, h);
  });

  test("a notification of another holder or a release is read at once, and a released lease taken at once", async () => {
    const env = newEnv();
    const baz = new Candidate(env, "baz", { releaseOnCancel: true });
    const hBaz = baz.run();
    await env.clock.flush();
    const bing = new Candidate(env, "bing", { lock: { watchHealth: true } });
    const hBing = bing.run();
    await env.clock.advance(40 * S);
    assert.equal(bing.started, 0);
    const mark = bing.lock.log.length;
    await abortAndWait(env, hBaz, 1);
    const releasedAt = env.clock.now();
    await env.clock.runUntil(() => bing.started === 1, 50, "the waiter to take the released lease");
    assert.ok((bing.startedAt ?? Infinity) - releasedAt <= 50);
    assert.deepEqual(bing.callsSince(mark).slice(0, 2), ["get", "update"]);
    await abortAndWait(env, hBing);
  });

  test("a lease nobody renews is read and taken exactly when it expires", async () => {
    const env = newEnv();
    env.store.put(record({ holderIdentity: "baz", leaseDurationSeconds: 15, renewTime: env.clock.wallNow() }));
    const bing = new Candidate(env, "bing", { lock: { watchHealth: true } });
    const h = bing.run();
    await env.clock.runUntil(() => bing.started === 1, 20 * S, "the take-over");
    assert.deepEqual(startsOf(bing.lock, "get"), [0, 15 * S]);
    assert.equal(bing.startedAt, 15 * S);
    await abortAndWait(env, h);
  });

  test("after a crash, the lease is taken one lease duration after its last announced renewal", async () => {
    const env = newEnv();
    const holder = renewingHolder(env);
    const bing = new Candidate(env, "bing", { lock: { watchHealth: true } });
    const h = bing.run();
    await env.clock.advance(47 * S);
    holder.stop();
    const last = holder.lastWriteAt();
    await env.clock.runUntil(() => bing.started === 1, 40 * S, "the take-over");
    // Announced renewals are observed when they arrive: no read needed to see them, no lease
    // duration lost to a late read. The retry-period poll takes over at LD plus up to two polls.
    assert.equal(bing.startedAt, last + LD);
    await abortAndWait(env, h);
  });

  test("a read showing a change nobody announced switches to the retry period, so a crash is noticed as fast as by polling", async () => {
    const env = newEnv();
    const holder = renewingHolder(env, { silent: true });
    const bing = new Candidate(env, "bing", { lock: { watchHealth: true } });
    const h = bing.run();
    await env.clock.advance(47 * S);
    // The renewals are not announced, so every read sees a new record: the candidate polls.
    const gets = startsOf(bing.lock, "get", 10 * S);
    for (let i = 1; i < gets.length; i++) assert.ok(gets[i]! - gets[i - 1]! < 2.2 * RP, `gap between ${gets[i - 1]} and ${gets[i]}`);
    holder.stop();
    const last = holder.lastWriteAt();
    await env.clock.runUntil(() => bing.started === 1, 40 * S, "the take-over");
    assert.ok(bing.startedAt! <= last + LD + 2 * 2.2 * RP, `taken at ${bing.startedAt}, last renewal ${last}`);
    await abortAndWait(env, h);
  });

  test("a renewal announced while a read is in flight is read again at once, not taken on trust", async () => {
    const env = newEnv();
    const holder = renewingHolder(env);
    await env.clock.advance(990);
    const bing = new Candidate(env, "bing", { lock: { watchHealth: true, latency: { get: 50 } } });
    const h = bing.run();
    await env.clock.advance(20 * S);
    // Reads at 990 and at 990 + LD; the renewal at 16 000 arrives while that one is in flight, so the
    // candidate reads again as soon as it returns.
    assert.deepEqual(startsOf(bing.lock, "get").slice(0, 3), [990, 990 + LD, 990 + LD + 50]);
    holder.stop();
    await abortAndWait(env, h);
  });

  test("an announced renewal never makes a valid lease look expired", async () => {
    const env = newEnv();
    const holder = renewingHolder(env);
    const bing = new Candidate(env, "bing", { lock: { watchHealth: true } });
    const h = bing.run();
    await env.clock.advance(300 * S);
    assert.equal(bing.started, 0);
    assert.equal(env.store.read()?.holderIdentity, "baz");
    holder.stop();
    await abortAndWait(env, h);
  });
});
