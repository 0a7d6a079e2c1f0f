/**
 * The contract every lock backend proves against its real server: one suite, one small target file per
 * backend (test/locks/conformance-<backend>.test.ts). Whatever a backend cannot offer is declared in
 * its `LockCapabilities`, and the suite checks the declaration both ways instead of skipping.
 *
 * Lock-level cases use one lock object per simulated process (each with its own connection); the
 * elector-level cases (same identity twice, term after a delete, release) run real `LeaderElector`s
 * over them. docs/backends.md lists the cases and how to add a target.
 */
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import { LeaderElector } from "../../src/election/elector.js";
import { AlreadyExistsError, ConflictError, NotFoundError, type ResourceLock, type WatchedRecord, type WatchHealth } from "../../src/election/lock.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import type { LockCapabilities, OpenedLock } from "../../src/locks/backend.js";

export interface Timing {
  leaseDurationMs: number;
  renewDeadlineMs: number;
}

export interface ConformanceTarget {
  /** As shown in the test names, e.g. "redis (Sentinel)". */
  title: string;
  capabilities: LockCapabilities;
  /**
   * Starts the server. Returns a reason to skip when its binary is missing; the suite then skips with
   * it, except under CI=true, where it fails.
   */
  start(): Promise<string | undefined>;
  stop(): Promise<void>;
  /** A lock object as a separate process would have it (its own connection), on lease `name`. */
  open(name: string, identity: string, timing: Timing): Promise<OpenedLock>;
  /**
   * The store stops answering without closing anything (SIGSTOP of the server, a proxy that stops
   * forwarding, the critical section held by a hung writer) until `thaw`, at least for `names`.
   */
  freeze(names: string[]): Promise<void>;
  thaw(): Promise<void>;
  /** Deletes lease `name`'s record as an operator would; a term counter kept apart stays. */
  deleteRecord(name: string): Promise<void>;
}

/** Comfortably above every backend's connect time, yet short enough for the expiry cases. */
const TIMING: Timing = { leaseDurationMs: 2000, renewDeadlineMs: 1500 };
const RETRY_PERIOD_MS = 250;
/** Long command timeouts: in the abort cases the abort must be what ends the call. */
const PATIENT: Timing = { leaseDurationMs: 30_000, renewDeadlineMs: 20_000 };
const ABORT_BUDGET_MS = 100;
/** client-go's default retry period; "well within" it is a quarter. */
const NOTIFY_BUDGET_MS = 500;

function rec(holder: string, term: number, at = new Date(), leaseDurationSeconds = TIMING.leaseDurationMs / 1000): LeaderElectionRecord {
  return { holderIdentity: holder, leaseDurationSeconds, acquireTime: at, renewTime: at, leaderTransitions: term };
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return undefined;
}

/** A candidate: a LeaderElector over its own lock object, recording when it leads. */
class Candidate {
  readonly spans: { start: number; end?: number; term?: number }[] = [];
  readonly elector: LeaderElector;
  private readonly controller = new AbortController();
  private running: Promise<void> | undefined;
  error: unknown;

  constructor(
    readonly lock: ResourceLock,
    timing: Timing,
  ) {
    this.elector = new LeaderElector({
      lock,
      leaseDuration: timing.leaseDurationMs,
      renewDeadline: timing.renewDeadlineMs,
      retryPeriod: RETRY_PERIOD_MS,
      releaseOnCancel: true,
      callbacks: {
        onStartedLeading: async (signal) => {
          const span: { start: number; end?: number; term?: number } = { start: performance.now(), term: this.elector.term() };
          this.spans.push(span);
          await new Promise<void>((resolve) => {
            if (signal.aborted) resolve();
            else signal.addEventListener("abort", () => resolve(), { once: true });
          });
          span.end = performance.now();
        },
        onStoppedLeading: () => undefined,
      },
    });
  }

  get leading(): boolean {
    const last = this.spans.at(-1);
    return last !== undefined && last.end === undefined;
  }

  start(): void {
    this.running = this.elector.run(this.controller.signal).catch((e: unknown) => {
      this.error = e;
    });
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await this.running;
  }
}

export function conformance(target: ConformanceTarget): void {
  describe(`lock conformance: ${target.title}`, () => {
    let skip: string | undefined;
    const opened: ResourceLock[] = [];
    const candidates: Candidate[] = [];
    let seq = 0;
    const lease = (): string => `conf-${process.pid}-${++seq}`;

    before(async () => {
      skip = await target.start();
      if (skip !== undefined && process.env.CI === "true") throw new Error(skip);
    });
    after(async () => {
      await target.thaw();
      await Promise.all(candidates.map((c) => c.stop()));
      await Promise.all(opened.map((l) => l.close?.()));
      await target.stop();
    });

    const ready = (t: TestContext): boolean => {
      if (skip === undefined) return true;
      t.skip(skip);
      return false;
    };
    const open = async (name: string, identity: string, timing = TIMING): Promise<OpenedLock> => {
      const o = await target.open(name, identity, timing);
      opened.push(o.lock);
      return o;
    };
    const lock = async (name: string, identity: string, timing = TIMING): Promise<ResourceLock> => (await open(name, identity, timing)).lock;
    const candidate = async (name: string, identity: string): Promise<Candidate> => {
      const c = new Candidate(await lock(name, identity), TIMING);
      candidates.push(c);
      return c;
    };

    it("get of a lease never written is NotFound; create then get returns the record at the declared resolution", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const a = await lock(name, "a");
      assert.ok((await rejection(a.get())) instanceof NotFoundError);
      const at = new Date(Math.floor(Date.now() / 1000) * 1000 + 123);
      const written = rec("a", 3, at, 7);
      await a.create(written);
      const { record } = await (await lock(name, "b")).get();
      assert.equal(record.holderIdentity, "a");
      assert.equal(record.leaderTransitions, 3);
      assert.equal(record.leaseDurationSeconds * 1000 % target.capabilities.leaseDurationResolutionMs, 0);
      assert.equal(record.leaseDurationSeconds, 7);
      const res = target.capabilities.timeResolutionMs;
      for (const [got, want] of [[record.renewTime, at], [record.acquireTime, at]] as const) {
        assert.ok(got !== null);
        assert.ok(Math.abs(got.getTime() - want.getTime()) < res, `${got.toISOString()} vs ${want.toISOString()} (resolution ${res}ms)`);
        if (res === 1) assert.equal(got.getTime(), want.getTime());
      }
    });

    it("create of an existing lease is AlreadyExists, and of two racing creates exactly one wins", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const [a, b] = [await lock(name, "a"), await lock(name, "b")];
      const results = await Promise.allSettled([a.create(rec("a", 1)), b.create(rec("b", 1))]);
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
      const lost = results.find((r) => r.status === "rejected");
      assert.ok(lost?.status === "rejected" && lost.reason instanceof AlreadyExistsError, String(lost?.status === "rejected" ? lost.reason : ""));
      const winner = results[0]?.status === "fulfilled" ? "a" : "b";
      assert.equal((await a.get()).record.holderIdentity, winner);
      assert.ok((await rejection(a.create(rec("a", 2)))) instanceof AlreadyExistsError);
    });

    it("update is a compare-and-swap: a stale update is a Conflict and writes nothing", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const [a, b] = [await lock(name, "a"), await lock(name, "b")];
      const created = new Date();
      await a.create(rec("a", 1, created));
      await b.get();
      // A renewal one millisecond later: an identical rewrite would be no change to detect.
      await a.update(rec("a", 1, new Date(created.getTime() + 1)));
      const stale = await rejection(b.update(rec("b", 2)));
      assert.ok(stale instanceof ConflictError, String(stale));
      assert.equal((await b.get()).record.holderIdentity, "a");
      await b.update(rec("b", 2));
      assert.deepEqual([(await a.get()).record.holderIdentity, (await a.get()).record.leaderTransitions], ["b", 2]);
      assert.ok((await rejection(b.update(rec("b", 3)))) === undefined);
    });

    it("update of a deleted record is NotFound or Conflict, never a silent write", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const a = await lock(name, "a");
      await a.create(rec("a", 1));
      await a.get();
      await target.deleteRecord(name);
      const e = await rejection(a.update(rec("a", 1)));
      assert.ok(e instanceof NotFoundError || e instanceof ConflictError, String(e));
      const after = await rejection((await lock(name, "b")).get());
      if (after === undefined) assert.equal((await (await lock(name, "c")).get()).record.holderIdentity, "");
      else assert.ok(after instanceof NotFoundError, String(after));
    });

    it("raw changes on every write exactly when declared (rawChangesOnEveryWrite)", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const a = await lock(name, "a");
      const at = new Date(Math.floor(Date.now() / 1000) * 1000 + 100);
      await a.create(rec("a", 1, at));
      const first = (await a.get()).raw;
      // Only the renew time moves, by 1 ms within the same second.
      await a.update({ ...rec("a", 1, at), renewTime: new Date(at.getTime() + 1) });
      const second = (await a.get()).raw;
      assert.equal(first !== second, target.capabilities.rawChangesOnEveryWrite, `${first}\n${second}`);
      await a.update(rec("a", 1, new Date(at.getTime() + 1000)));
      assert.notEqual((await a.get()).raw, second);
    });

    it("every call is abandoned within 100 ms of its abort while the store is frozen", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const a = await lock(name, "a", PATIENT);
      const b = await lock(name, "b", PATIENT);
      const other = lease();
      const c = await lock(other, "c", PATIENT);
      await a.create(rec("a", 1));
      await b.get();
      const calls: [string, (signal: AbortSignal) => Promise<unknown>][] = [
        ["get", (s) => a.get(s)],
        ["update", (s) => b.update(rec("b", 2), s)],
        ["create", (s) => c.create(rec("c", 1), s)],
      ];
      await target.freeze([name, other]);
      try {
        for (const [op, call] of calls) {
          const controller = new AbortController();
          let settledAt: number | undefined;
          const p = call(controller.signal).then(
            () => (settledAt = performance.now()),
            () => (settledAt = performance.now()),
          );
          await new Promise((r) => setTimeout(r, 200));
          const abortedAt = performance.now();
          controller.abort(new Error("abandoned"));
          await Promise.race([p, new Promise((r) => setTimeout(r, 5000))]);
          assert.ok(settledAt !== undefined, `${op} never settled after its abort`);
          assert.ok(settledAt - abortedAt <= ABORT_BUDGET_MS, `${op} settled ${Math.round(settledAt - abortedAt)}ms after its abort`);
        }
      } finally {
        await target.thaw();
      }
      // Usable again, and the abandoned update landed or not, but never as a partial write.
      const holder = (await (await lock(name, "d")).get()).record.holderIdentity;
      assert.ok(holder === "a" || holder === "b", holder);
    });

    it("notifications wake a waiter well within one retry period exactly when declared (notifies)", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const waiter = await lock(name, "w");
      const writer = await lock(name, "x");
      if (!target.capabilities.notifies) {
        assert.equal(waiter.watch, undefined);
        return;
      }
      assert.equal(typeof waiter.watch, "function");
      const controller = new AbortController();
      t.after(() => controller.abort());
      let wakes = 0;
      waiter.watch?.(() => wakes++, controller.signal);
      // The first write proves the watch is established (connecting may take a while).
      await writer.create(rec("x", 1));
      await waitFor(() => wakes > 0, 10_000, "the first notification");
      await new Promise((r) => setTimeout(r, 100));
      const before = wakes;
      const wroteAt = performance.now();
      await writer.update(rec("", 1));
      await waitFor(() => wakes > before, 5000, "a notification of the release");
      assert.ok(performance.now() - wroteAt <= NOTIFY_BUDGET_MS, `woken ${Math.round(performance.now() - wroteAt)}ms after the write`);
    });

    it("a connected watch announces a renewal with the record get returns, and no bare wake-up, exactly when declared (announcesRenewals)", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const waiter = await lock(name, "w");
      const writer = await lock(name, "x");
      if (waiter.watch === undefined) {
        assert.equal(target.capabilities.announcesRenewals, false, "announcing renewals needs a watch");
        return;
      }
      const controller = new AbortController();
      t.after(() => controller.abort());
      let wakes = 0;
      const seen: WatchedRecord[] = [];
      const health: WatchHealth[] = [];
      waiter.watch(
        (record) => (record === undefined ? wakes++ : seen.push(record)),
        controller.signal,
        (h) => health.push(h),
      );
      await writer.create(rec("x", 1));
      await waitFor(() => wakes + seen.length > 0, 10_000, "the first notification");
      if (!target.capabilities.announcesRenewals) {
        // Such a watch must never let waiters stop polling.
        await new Promise((r) => setTimeout(r, 200));
        assert.ok(!health.includes("connected"), `reported ${health.join(", ")} without declaring announcesRenewals`);
        return;
      }
      await waitFor(() => health.at(-1) === "connected", 10_000, "the watch to report itself connected");
      await new Promise((r) => setTimeout(r, 100));
      const wakesBefore = wakes;
      const seenBefore = seen.length;
      await writer.get();
      await writer.update(rec("x", 1, new Date(Date.now() + 1000)));
      await waitFor(() => seen.length > seenBefore, NOTIFY_BUDGET_MS * 4, "the renewal to be announced");
      const read = await waiter.get();
      const announced = seen.at(-1);
      assert.equal(announced?.raw, read.raw, "announced exactly as get returns it");
      assert.deepEqual(announced?.record, read.record);
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(wakes, wakesBefore, "a renewal is no bare wake-up (that would make every waiter read)");
      // Anything else still reaches the waiter: a release, as a wake-up or with its record.
      const before = wakes + seen.length;
      await writer.update(rec("", 1));
      await waitFor(() => wakes + seen.length > before, NOTIFY_BUDGET_MS * 4, "the release to be notified");
    });

    it("the store expires an abandoned record by itself exactly when declared (expiresByItself)", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const timing = { leaseDurationMs: 1000, renewDeadlineMs: 800 };
      const a = await lock(name, "a", timing);
      await a.create(rec("a", 1, new Date(), 1));
      await new Promise((r) => setTimeout(r, 2500));
      const e = await rejection((await lock(name, "b", timing)).get());
      const gone = e instanceof NotFoundError || (e === undefined && (await (await lock(name, "c", timing)).get()).record.holderIdentity === "");
      assert.equal(gone, target.capabilities.expiresByItself);
    });

    it("offers a process guard exactly when it declares seesHolderProcesses", async (t) => {
      if (!ready(t)) return;
      const o = await open(lease(), "a");
      assert.equal(o.processGuard !== undefined, target.capabilities.seesHolderProcesses);
    });

    it("release writes only our own record", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const a = await candidate(name, "a");
      a.start();
      await waitFor(() => a.leading, 10_000, "a to lead");
      // Another writer takes the record over behind a's back; a is cancelled before it notices.
      const b = await lock(name, "b");
      for (;;) {
        const { record } = await b.get();
        const e = await rejection(b.update({ ...rec("b", record.leaderTransitions + 1), leaseDurationSeconds: 30 }));
        if (e === undefined) break;
        assert.ok(e instanceof ConflictError, String(e));
      }
      await a.stop();
      const { record } = await (await lock(name, "c")).get();
      assert.equal(record.holderIdentity, "b");
    });

    it("two live candidates with the same identity never both lead", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const first = await candidate(name, "same");
      first.start();
      await waitFor(() => first.leading, 10_000, "the first to lead");
      const second = await candidate(name, "same");
      second.start();
      // Two lease durations: enough for the second to have taken the lease by any path.
      await new Promise((r) => setTimeout(r, 2 * TIMING.leaseDurationMs + 500));
      const both = first.leading && second.leading;
      const secondLed = second.spans.length > 0;
      await second.stop();
      await first.stop();
      assert.ok(!both, "both candidates lead at once");
      assert.ok(!secondLed, "the second candidate with the same identity led while the first was alive");
    });

    it("the term never goes back after a delete, for a candidate that saw the record", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      const seed = await lock(name, "old");
      // An earlier, expired holder at term 5: the next acquisition is term 6.
      await seed.create(rec("old", 5, new Date(Date.now() - 60_000)));
      const a = await candidate(name, "a");
      const b = await candidate(name, "b");
      a.start();
      await waitFor(() => a.leading, 10_000, "a to lead");
      const term = a.spans.at(-1)?.term ?? -1;
      assert.ok(term >= 6, `term ${term}`);
      b.start();
      await waitFor(async () => (await rejection(b.lock.get())) === undefined && b.elector.getLeader() === "a", 10_000, "b to see a lead");
      await target.deleteRecord(name);
      await a.stop();
      const reader = await lock(name, "r");
      await waitFor(async () => b.leading || (a.spans.length > 1 && a.leading), 6 * TIMING.leaseDurationMs, "someone to lead again");
      const { record } = await reader.get();
      assert.ok(record.leaderTransitions > term, `term went from ${term} to ${record.leaderTransitions} after the delete`);
    });

    it("a fresh process continues the term after a delete exactly when declared (termSurvivesDelete)", async (t) => {
      if (!ready(t)) return;
      const name = lease();
      await (await lock(name, "old")).create(rec("old", 5, new Date(Date.now() - 60_000)));
      const a = await candidate(name, "a");
      a.start();
      await waitFor(() => a.leading, 10_000, "a to lead");
      const term = a.spans.at(-1)?.term ?? -1;
      await a.stop();
      await target.deleteRecord(name);
      const fresh = await candidate(name, "fresh");
      fresh.start();
      await waitFor(() => fresh.leading, 10_000, "the fresh candidate to lead");
      const freshTerm = fresh.spans.at(-1)?.term ?? -1;
      await fresh.stop();
      assert.equal(freshTerm > term, target.capabilities.termSurvivesDelete, `term ${term} before the delete, ${freshTerm} after`);
    });
  });
}
