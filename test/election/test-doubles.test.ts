/**
 * The fake clock and the in-memory lock the election tests (and library users) rely on.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { sleep } from "../../src/election/clock.js";
import { AlreadyExistsError, ConflictError, LockError, NotFoundError } from "../../src/election/lock.js";
import { MemoryLock, MemoryStore } from "../../src/locks/memory/index.js";
import { FakeClock } from "../support/fake-clock.js";
import { record, wallAt } from "./harness.js";

describe("FakeClock", () => {
  test("timers fire in time order, ties in the order they were set, and cancelled timers never fire", async () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    clock.setTimer(() => fired.push("b@20"), 20);
    clock.setTimer(() => fired.push("a@10"), 10);
    clock.setTimer(() => fired.push("c@20"), 20);
    const cancelled = clock.setTimer(() => fired.push("never"), 15);
    cancelled.cancel();
    await clock.advance(19);
    assert.deepEqual(fired, ["a@10"]);
    await clock.advance(1);
    assert.deepEqual(fired, ["a@10", "b@20", "c@20"]);
    assert.equal(clock.now(), 20);
    assert.equal(clock.pendingTimers(), 0);
  });

  test("async code driven by timers runs to its next timer between firings", async () => {
    const clock = new FakeClock();
    const ticks: number[] = [];
    void (async () => {
      for (let i = 0; i < 5; i++) {
        await sleep(clock, 100);
        await Promise.resolve();
        ticks.push(clock.now());
      }
    })();
    await clock.advance(1000);
    assert.deepEqual(ticks, [100, 200, 300, 400, 500]);
    assert.equal(clock.now(), 1000);
  });

  test("wallNow follows now, and a wall jump leaves now and timers alone", async () => {
    const clock = new FakeClock({ wallBase: new Date("2024-05-01T12:00:00Z") });
    let fired = false;
    clock.setTimer(() => (fired = true), 1000);
    await clock.advance(500);
    assert.deepEqual(clock.wallNow(), new Date("2024-05-01T12:00:00.500Z"));
    clock.jumpWall(-3600_000);
    assert.equal(clock.now(), 500);
    assert.deepEqual(clock.wallNow(), new Date("2024-05-01T11:00:00.500Z"));
    assert.equal(fired, false);
    clock.setWall(new Date("2030-01-01T00:00:00Z"));
    await clock.advance(500);
    assert.equal(fired, true);
    assert.deepEqual(clock.wallNow(), new Date("2030-01-01T00:00:00.500Z"));
  });

  test("random() is reproducible for a seed", () => {
    const a = new FakeClock({ seed: 7 });
    const b = new FakeClock({ seed: 7 });
    const xs = Array.from({ length: 5 }, () => a.random());
    assert.deepEqual(Array.from({ length: 5 }, () => b.random()), xs);
    assert.ok(xs.every((x) => x >= 0 && x < 1));
  });

  test("runUntil stops at the first timer after which the predicate holds, and throws when it never does", async () => {
    const clock = new FakeClock();
    let n = 0;
    const tick = (): void => {
      n += 1;
      clock.setTimer(tick, 300);
    };
    clock.setTimer(tick, 300);
    assert.equal(await clock.runUntil(() => n === 3, 10_000), 900);
    await assert.rejects(clock.runUntil(() => n === 100, 1000, "n to reach 100"), /n to reach 100 did not hold within 1000ms/);
    assert.equal(clock.now(), 1900);
    await assert.rejects(clock.advanceTo(0), RangeError);
  });
});

describe("MemoryLock", () => {
  test("get of a missing record is NotFound; create then a second create is AlreadyExists", async () => {
    const store = new MemoryStore("ns/x");
    const a = new MemoryLock(store, "a");
    const b = new MemoryLock(store, "b");
    await assert.rejects(a.get(), NotFoundError);
    await a.create(record({ holderIdentity: "a" }));
    await assert.rejects(b.create(record({ holderIdentity: "b" })), AlreadyExistsError);
    assert.equal((await b.get()).record.holderIdentity, "a");
    assert.equal(a.describe(), "ns/x");
    assert.equal(a.identity(), "a");
  });

  test("update is a compare-and-swap against this lock's last read or write", async () => {
    const store = new MemoryStore();
    const a = new MemoryLock(store, "a");
    const b = new MemoryLock(store, "b");
    await assert.rejects(a.update(record({ holderIdentity: "a" })), (e: unknown) => e instanceof LockError && !(e instanceof ConflictError));
    await a.create(record({ holderIdentity: "a" }));
    await b.get();
    await a.update(record({ holderIdentity: "a", leaderTransitions: 1 })); // a's own write keeps a current
    await a.update(record({ holderIdentity: "a", leaderTransitions: 2 }));
    await assert.rejects(b.update(record({ holderIdentity: "b" })), ConflictError);
    assert.equal(store.read()?.holderIdentity, "a");
    await b.get();
    await b.update(record({ holderIdentity: "b" }));
    await assert.rejects(a.update(record({ holderIdentity: "a" })), ConflictError);
    store.delete();
    await assert.rejects(b.update(record({ holderIdentity: "b" })), NotFoundError);
    assert.deepEqual(a.calls, ["update", "create", "update", "update", "update"]);
  });

  test("stored records are deep copies and raw uses whole-second timestamps", async () => {
    const store = new MemoryStore();
    const a = new MemoryLock(store, "a");
    const r = record({ holderIdentity: "a", renewTime: new Date("2024-05-01T12:00:00.750Z") });
    await a.create(r);
    r.holderIdentity = "mutated";
    r.renewTime?.setTime(0);
    const got = await a.get();
    assert.equal(got.record.holderIdentity, "a");
    assert.deepEqual(got.record.renewTime, new Date("2024-05-01T12:00:00.750Z"));
    got.record.acquireTime?.setTime(0);
    assert.deepEqual(store.read()?.acquireTime, wallAt(0));
    assert.equal(
      got.raw,
      '{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":"2024-05-01T12:00:00Z","renewTime":"2024-05-01T12:00:00Z","leaderTransitions":0}',
    );
  });

  test("events are recorded in client-go's fake-recorder form", () => {
    const a = new MemoryLock(new MemoryStore(), "baz");
    a.recordEvent("became leader");
    assert.deepEqual(a.events, ["Normal LeaderElection baz became leader"]);
  });

  test("injected failures apply to the next n calls of an operation", async () => {
    const store = new MemoryStore();
    const a = new MemoryLock(store, "a");
    a.fail("get", new LockError("boom"), 2);
    await assert.rejects(a.get(), /boom/);
    await assert.rejects(a.get(), /boom/);
    await assert.rejects(a.get(), NotFoundError);
    a.fail("all", new LockError("down"));
    await assert.rejects(a.create(record({ holderIdentity: "a" })), /down/);
    a.clearFailures();
    await a.create(record({ holderIdentity: "a" }));
    assert.deepEqual(a.log.map((c) => c.outcome), ["error", "error", "error", "error", "ok"]);
  });

  test("a hang lasts until the call's signal aborts", async () => {
    const a = new MemoryLock(new MemoryStore(), "a");
    a.fail("get", "hang");
    const controller = new AbortController();
    const pending = a.get(controller.signal);
    await new Promise((r) => setImmediate(r));
    assert.equal(a.hangingCalls, 1);
    controller.abort(new Error("deadline"));
    await assert.rejects(pending, /deadline/);
    assert.equal(a.hangingCalls, 0);
    await assert.rejects(a.get(AbortSignal.abort()), (e: unknown) => e instanceof Error);
  });

  test("a lost response applies the write but reports the error", async () => {
    const store = new MemoryStore();
    const a = new MemoryLock(store, "a");
    a.fail("create", { error: new LockError("timeout"), afterApply: true }, 1);
    await assert.rejects(a.create(record({ holderIdentity: "a" })), /timeout/);
    assert.equal(store.read()?.holderIdentity, "a");
  });

  test("latency runs on the injected clock and the write lands when it has passed", async () => {
    const clock = new FakeClock();
    const store = new MemoryStore();
    const a = new MemoryLock(store, "a", { clock, latency: { create: 250 } });
    let done = false;
    void a.create(record({ holderIdentity: "a" })).then(() => (done = true));
    await clock.advance(249);
    assert.equal(store.read(), undefined);
    await clock.advance(1);
    assert.equal(done, true);
    assert.deepEqual(a.log, [{ op: "create", start: 0, end: 250, outcome: "ok" }]);
    assert.throws(() => new MemoryLock(store, "b", { latency: { get: 1 } }), TypeError);
  });

  test("watch is offered only on request, notifies after every write and stops when its signal aborts", async () => {
    const store = new MemoryStore();
    assert.equal(new MemoryLock(store, "x").watch, undefined);
    const a = new MemoryLock(store, "a", { watch: true });
    const b = new MemoryLock(store, "b");
    let notified = 0;
    const controller = new AbortController();
    a.watch?.(() => (notified += 1), controller.signal);
    assert.equal(store.watcherCount(), 1);
    await b.create(record({ holderIdentity: "b" }));
    store.put(record({ holderIdentity: "c" }));
    await Promise.resolve();
    assert.equal(notified, 2);
    controller.abort();
    assert.equal(store.watcherCount(), 0);
    store.delete();
    await Promise.resolve();
    assert.equal(notified, 2);
  });

  test("a closed lock refuses calls and ends its watches", async () => {
    const store = new MemoryStore();
    const a = new MemoryLock(store, "a", { watch: true });
    a.watch?.(() => {}, new AbortController().signal);
    await a.close();
    assert.equal(store.watcherCount(), 0);
    await assert.rejects(a.get(), /closed/);
  });
});
