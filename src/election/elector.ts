import { sleep, systemClock, type Clock, type TimerHandle } from "./clock.js";
import { validateElectionConfig, JITTER_FACTOR, type ElectionConfig, type LeaderCallbacks } from "./config.js";
import type { ElectionEvent, LostReason } from "./events.js";
import { ConflictError, NotFoundError, type ResourceLock, type WatchedRecord } from "./lock.js";
import { currentMetricsProvider, type MetricsProvider } from "./metrics.js";
import { emptyRecord, type LeaderElectionRecord } from "./record.js";
import { Term, effectiveLeaseDurationMs, type TermView } from "./term.js";

/** The reason an `onStartedLeading` signal aborts with. */
export class LeadershipEndedError extends Error {
  constructor(readonly reason: LostReason) {
    super(`leadership ended: ${reason.replace("_", " ")}`);
    this.name = "LeadershipEndedError";
  }
}

type Phase = "acquire" | "renew";
type LockOp = "get" | "create" | "update";

/** How many of our latest attempted writes are remembered to recognise our own record when read back. */
const OWN_WRITES_KEPT = 16;

/** Same holder, term, duration and timestamps (to the millisecond every backend keeps). */
function sameRecord(a: LeaderElectionRecord, b: LeaderElectionRecord): boolean {
  const time = (d: Date | null): number | null => (d === null ? null : d.getTime());
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaderTransitions === b.leaderTransitions &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    time(a.acquireTime) === time(b.acquireTime) &&
    time(a.renewTime) === time(b.renewTime)
  );
}

interface AttemptResult {
  ok: boolean;
  /** Set when a renew read shows somebody else (or nobody) holding the lease. */
  foreignHolder?: string;
  /** Set when a renew read shows our record with another preferredHolder: asked to hand over. */
  handover?: boolean;
  error?: unknown;
  slowPath?: boolean;
}

/**
 * client-go's `LeaderElector`, with the stricter behaviour of spec/election.md:
 * monotonic deadlines counted from the last renewal sent, immediate step-down on a foreign holder,
 * graceful hand-over (release only after the work settled), release only of our own record, a term that
 * increments on every acquisition, and watch-driven fast acquisition.
 */
export class LeaderElector {
  private readonly config: ElectionConfig;
  private readonly lock: ResourceLock;
  private readonly clock: Clock;
  private readonly callbacks: LeaderCallbacks;
  private readonly metrics: MetricsProvider;
  private readonly name: string;
  private readonly id: string;

  // What we last saw in the store, and when (monotonic). Survives across run() calls, as in client-go.
  private observedRecord: LeaderElectionRecord = emptyRecord();
  private observedRaw: string | undefined;
  private observedTime = Number.NEGATIVE_INFINITY;
  private reportedLeader = "";

  /** Our current or last term; owns every deadline derived from the last write sent. */
  private termState: Term | undefined;
  private leading = false;
  /** The records of our latest writes (also those whose outcome is unknown), newest last. */
  private ownWrites: LeaderElectionRecord[] = [];
  /** Highest `leaderTransitions` ever read or written: a re-created lease never goes back below it. */
  private highestTermSeen = -1;
  /** Whether we ever read or wrote a record: only then can a NotFound mean "deleted". */
  private seenRecord = false;
  /** Monotonic time of the first NotFound since we last saw a record. */
  private deletedSince: number | undefined;
  /** The raw of a record naming our identity that we did not write, once reported. */
  private reportedIdentityRaw: string | undefined;
  private running = false;

  constructor(config: ElectionConfig) {
    validateElectionConfig(config);
    this.config = config;
    this.lock = config.lock;
    this.clock = config.clock ?? systemClock;
    this.callbacks = config.callbacks;
    this.metrics = config.metrics ?? currentMetricsProvider();
    this.name = config.name ?? "";
    this.id = config.lock.identity();
    this.metrics.leaderOff(this.name);
  }

  /** True when the last observed record names us (client-go semantics: informational, may lag). */
  isLeader(): boolean {
    return this.observedRecord.holderIdentity === this.id;
  }

  /** The holder in the last observed record; `""` when released or never seen. */
  getLeader(): string {
    return this.observedRecord.holderIdentity;
  }

  /**
   * Authoritative: true from acquisition until leadership ends (deadline, foreign holder, cancel).
   * Unlike `isLeader()` it turns false the moment this process stops leading.
   */
  isLeading(): boolean {
    return this.leading;
  }

  /** leaderTransitions of our current or last term: the fencing token handed to guarded work. */
  term(): number | undefined {
    return this.termState?.term;
  }

  /**
   * The deadlines of our current term, or of the last one once it ended (`active` false) until the next
   * acquisition; undefined before the first. A snapshot: take a new one after each `renewed` event.
   */
  currentTerm(): Readonly<TermView> | undefined {
    return this.termState?.view();
  }

  /** A copy of the last observed record. */
  observed(): LeaderElectionRecord {
    return { ...this.observedRecord };
  }

  /** client-go `Check`: unhealthy when we lead but have not renewed for LD + `maxTolerableExpiredLeaseMs`. */
  check(maxTolerableExpiredLeaseMs: number): Error | undefined {
    if (!this.isLeader()) return undefined;
    if (this.clock.now() - this.observedTime > this.config.leaseDuration + maxTolerableExpiredLeaseMs) {
      return new Error(`failed election to renew leadership on lease ${this.name}`);
    }
    return undefined;
  }

  /**
   * One campaign: acquire, lead until leadership ends, hand over, return. `onStoppedLeading` is always
   * called when it returns, even if we never led (as in client-go). Re-run to campaign again.
   */
  async run(signal: AbortSignal = new AbortController().signal): Promise<void> {
    if (this.running) throw new Error("LeaderElector.run is already running; one campaign at a time");
    this.running = true;
    try {
      if (!(await this.acquire(signal))) return;
      await this.lead(signal);
    } finally {
      this.running = false;
      try {
        this.callbacks.onStoppedLeading();
      } catch (error) {
        this.emit({ type: "callback_error", lock: this.lock.describe(), callback: "onStoppedLeading", error });
      }
    }
  }

  /**
   * A single acquire-or-renew attempt (client-go `tryAcquireOrRenew`). Low-level: exposed for tests.
   * Outside `run` every successful attempt is an acquisition (a new term, no fast path), so do not
   * drive a loop with it; `run` is what applications use.
   */
  async tryAcquireOrRenew(signal?: AbortSignal): Promise<boolean> {
    return (await this.attempt(signal, this.leading ? "renew" : "acquire")).ok;
  }

  private async lead(runSignal: AbortSignal): Promise<void> {
    this.leading = true;
    const leadingSignal = new AbortController();
    const term = this.termState;
    if (term === undefined) throw new Error("internal: leading without a term");
    let settled = false;
    // Asynchronous like client-go's goroutine: run() never waits for the work to start.
    const work = Promise.resolve()
      .then(() => this.callbacks.onStartedLeading(leadingSignal.signal))
      .then(
        () => undefined,
        (error: unknown) => {
          this.emit({ type: "callback_error", lock: this.lock.describe(), callback: "onStartedLeading", error });
        },
      )
      .finally(() => {
        settled = true;
      });

    // Called synchronously when leadership ends, never after an await: the work's signal must not wait
    // for any lock call (a hung one is abandoned, see `call`).
    const stopLeading = (reason: LostReason): void => {
      this.leading = false;
      term.end();
      leadingSignal.abort(new LeadershipEndedError(reason));
      this.metrics.leaderOff(this.name);
      this.emit({ type: "lost", lock: this.lock.describe(), reason, holder: this.observedRecord.holderIdentity });
    };
    await this.renew(runSignal, term, stopLeading);

    // Nobody can take over before lastRenewSent + LD (whole seconds, as followers see it). Past that
    // our work may overlap a successor's no matter what we do, so we never release on its behalf: the
    // lease is left to expire.
    if (!settled) await this.settleBy(work, term.successorEarliestStart);
    if (!settled) {
      this.emit({ type: "work_overran", lock: this.lock.describe() });
    } else if (this.config.releaseOnCancel) {
      await this.release();
    }
    this.lock.recordEvent("stopped leading");
  }

  private settleBy(work: Promise<void>, deadline: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.clock.setTimer(resolve, deadline - this.clock.now());
      void work.then(() => {
        timer.cancel();
        resolve();
      });
    });
  }

  /**
   * Acquire loop: first attempt at once, then jittered in [RP, 2.2·RP), woken early by `watch`.
   *
   * While the lock reports its watch connected (`WatchHealth`), every write is announced, so polling
   * adds nothing: the next read is when the observed record can first expire (observedTime + its lease
   * duration, client-go's rule), and at least once per lease duration. That read is never later than
   * the poll that would have found the lease expired, so a crashed leader is replaced no later than
   * before. Renewals announced with their content move the observed time without a read; anything else
   * announced is read at once. The retry-period schedule comes back at once when the watch drops,
   * when a read failed, when the lease is free or deleted, and after a read showed a change nobody
   * announced (a writer that does not announce its renewals, a lost message).
   */
  private async acquire(signal: AbortSignal): Promise<boolean> {
    const describe = this.lock.describe();
    this.emit({ type: "campaigning", lock: describe });
    const stopWatch = new AbortController();
    const watch = { healthy: false, notices: 0, noticesAtObservation: 0 };
    let woken = false;
    let attempting = false;
    let wake: (() => void) | undefined;
    let rearm: (() => void) | undefined;
    if (this.lock.watch) {
      this.lock.watch(
        (seen) => {
          watch.notices++;
          // During an attempt the read in flight may predate the announced write: read again instead.
          if (seen !== undefined && !attempting && this.observeAnnounced(seen)) {
            watch.noticesAtObservation = watch.notices;
            rearm?.();
            return;
          }
          woken = true;
          wake?.();
        },
        stopWatch.signal,
        (health) => {
          const healthy = health === "connected";
          if (healthy === watch.healthy) return;
          watch.healthy = healthy;
          rearm?.();
        },
      );
    }
    let judged = false;
    try {
      while (!signal.aborted) {
        woken = false;
        const rawBefore = this.observedRaw;
        const announced = watch.notices !== watch.noticesAtObservation;
        const noticesAtStart = watch.notices;
        const attemptStart = this.clock.now();
        attempting = true;
        let result: AttemptResult;
        try {
          result = await this.attempt(signal, "acquire");
        } finally {
          attempting = false;
        }
        let unannounced = false;
        if (this.observedRaw !== rawBefore) {
          unannounced = judged && !announced;
          // A notice that came during the read may be about a later write: it still counts for the next.
          watch.noticesAtObservation = noticesAtStart;
        }
        judged = true;
        this.maybeReportTransition();
        if (result.ok) {
          this.lock.recordEvent("became leader");
          this.metrics.leaderOn(this.name);
          this.emit({ type: "acquired", lock: describe, term: this.termState?.term ?? 0, record: this.observed(), sentAt: this.termState?.lastRenewSent ?? this.clock.now() });
          return true;
        }
        if (signal.aborted) break;
        this.emit({
          type: "acquire_failed",
          lock: describe,
          error: result.error,
          holder: this.observedRecord.holderIdentity,
        });
        // The event's handler may have cancelled the campaign (--no-wait does): an abort listener added
        // now would never fire, and we would sleep a whole retry period for nothing.
        if (woken || signal.aborted) continue;
        const pollAt = this.clock.now() + this.config.retryPeriod * (1 + this.clock.random() * JITTER_FACTOR);
        const polling = result.error !== undefined || unannounced;
        const nextReadAt = (): number => {
          if (!watch.healthy || polling || this.deletedSince !== undefined || this.observedRecord.holderIdentity === "") return pollAt;
          const expiresAt = this.observedTime + this.observedRecord.leaseDurationSeconds * 1000;
          return Math.min(expiresAt, attemptStart + this.config.leaseDuration);
        };
        await new Promise<void>((resolve) => {
          let timer: TimerHandle | undefined;
          const done = (): void => {
            timer?.cancel();
            signal.removeEventListener("abort", done);
            wake = undefined;
            rearm = undefined;
            resolve();
          };
          // Health changed or a renewal was observed: the time of the next read moves.
          const arm = (): void => {
            timer?.cancel();
            timer = this.clock.setTimer(done, nextReadAt() - this.clock.now());
          };
          wake = done;
          rearm = arm;
          signal.addEventListener("abort", done, { once: true });
          arm();
        });
      }
      return false;
    } finally {
      stopWatch.abort();
    }
  }

  /**
   * A renewal announced with its content is observed as a read would observe it (the observed time
   * moves when the bytes change, client-go's rule). Anything else (another holder, a new term, a
   * hand-over request, a release) is left to a read. True when handled.
   */
  private observeAnnounced(seen: WatchedRecord): boolean {
    const observed = this.observedRecord;
    const next = seen.record;
    if (this.observedRaw === undefined || this.deletedSince !== undefined) return false;
    if (
      next.holderIdentity === "" ||
      next.holderIdentity !== observed.holderIdentity ||
      next.leaderTransitions !== observed.leaderTransitions ||
      next.leaseDurationSeconds !== observed.leaseDurationSeconds ||
      (next.preferredHolder ?? "") !== (observed.preferredHolder ?? "")
    ) {
      return false;
    }
    if (seen.raw !== this.observedRaw) {
      this.observedRecord = { ...next };
      this.observedRaw = seen.raw;
      this.observedTime = this.clock.now();
    }
    return true;
  }

  /**
   * Renew loop. Rounds start RP after the previous success (the first at once, as client-go's
   * `wait.Until`); within a round attempts follow an RP ticker. Leadership ends when the run is
   * cancelled, when a read shows another holder, or at lastRenewSent + RD by a timer that no hung
   * request can delay.
   */
  private async renew(runSignal: AbortSignal, term: Term, stopLeading: (reason: LostReason) => void): Promise<LostReason> {
    const rp = this.config.retryPeriod;
    const stop = new AbortController();
    let reason: LostReason | undefined;
    const end = (why: LostReason): void => {
      if (reason !== undefined) return;
      reason = why;
      stopLeading(why);
      // Also abandons the renewal in flight: the loop below resumes at once, whatever the lock does.
      stop.abort(new LeadershipEndedError(why));
    };
    const onCancel = (): void => end("cancelled");
    runSignal.addEventListener("abort", onCancel, { once: true });
    if (runSignal.aborted) end("cancelled");

    let deadlineTimer: TimerHandle | undefined;
    const armDeadline = (): void => {
      deadlineTimer?.cancel();
      const remaining = term.stopDeadline - this.clock.now();
      // A renewal answered after a pause (SIGSTOP, VM freeze) may already be past its own deadline.
      if (remaining <= 0) end("deadline");
      else deadlineTimer = this.clock.setTimer(() => end("deadline"), remaining);
    };
    armDeadline();

    const pause = (ms: number): Promise<void> => sleep(this.clock, ms, stop.signal).catch(() => undefined);
    try {
      let firstRound = true;
      while (reason === undefined) {
        if (!firstRound) await pause(rp);
        firstRound = false;
        if (reason !== undefined) break;
        const roundStart = this.clock.now();
        while (reason === undefined) {
          const attemptStart = this.clock.now();
          const result = await this.attempt(stop.signal, "renew");
          if (reason !== undefined) break;
          if (result.ok) {
            armDeadline();
            this.emit({
              type: "renewed",
              lock: this.lock.describe(),
              latencyMs: this.clock.now() - attemptStart,
              slowPath: result.slowPath === true,
              sentAt: term.lastRenewSent,
            });
            break;
          }
          if (result.foreignHolder !== undefined) {
            end("foreign_holder");
            break;
          }
          if (result.handover === true) {
            end("handover");
            break;
          }
          this.emit({
            type: "renew_failed",
            lock: this.lock.describe(),
            error: result.error,
            deadlineInMs: term.stopDeadline - this.clock.now(),
          });
          // A ticker of period RP from the round start; one tick missed during a slow call is buffered.
          const nextTick = roundStart + rp * (Math.floor((attemptStart - roundStart) / rp) + 1);
          const wait = nextTick - this.clock.now();
          if (wait > 0) await pause(wait);
        }
        this.maybeReportTransition();
      }
    } finally {
      deadlineTimer?.cancel();
      runSignal.removeEventListener("abort", onCancel);
    }
    return reason ?? "cancelled";
  }

  /**
   * client-go `tryAcquireOrRenew`, phase-aware for the term (D7), the foreign-holder rule (D3), our
   * identity written by another process (D9) and a deleted lease (D10).
   */
  private async attempt(signal: AbortSignal | undefined, phase: Phase): Promise<AttemptResult> {
    const now = this.clock.now();
    const wall = this.clock.wallNow();
    const desired: LeaderElectionRecord = {
      holderIdentity: this.id,
      leaseDurationSeconds: Math.trunc(this.config.leaseDuration / 1000),
      acquireTime: wall,
      renewTime: wall,
      leaderTransitions: 0,
    };

    // 1. Fast path: we lead and our lease is valid, so write without reading; the lock's CAS turns a
    //    stale view into a Conflict instead of a blind overwrite.
    if (phase === "renew" && this.isLeader() && this.isLeaseValid(now)) {
      desired.acquireTime = this.observedRecord.acquireTime;
      desired.leaderTransitions = this.observedRecord.leaderTransitions;
      const sent = this.clock.now();
      try {
        await this.write("update", phase, desired, signal);
        this.wrote(desired, sent, phase);
        return { ok: true };
      } catch (error) {
        // Cancelled or past the deadline: a read could not change the outcome.
        if (signal?.aborted) return { ok: false, error };
        // Otherwise fall through to the slow path (client-go: "Failed to update lease optimistically").
      }
    }

    // 2. Read.
    let fetched: { record: LeaderElectionRecord; raw: string };
    try {
      fetched = await this.call("get", phase, signal, (s) => this.lock.get(s));
    } catch (error) {
      if (!(error instanceof NotFoundError) || signal?.aborted) return { ok: false, error };
      return this.recreate(desired, signal, phase);
    }

    // 3. Observe: observed time moves only when the bytes change (a deletion in between is a change).
    if (this.deletedSince !== undefined) {
      this.deletedSince = undefined;
      this.observedRaw = undefined;
    }
    if (fetched.raw !== this.observedRaw) {
      this.observedRecord = fetched.record;
      this.observedRaw = fetched.raw;
      this.observedTime = this.clock.now();
    }
    this.sawRecord(fetched.record);
    const holder = fetched.record.holderIdentity;
    // D9: a record naming our identity is ours only if we wrote it; another process sharing the
    // identity (or our predecessor killed a moment ago, whose work may still run) is a foreign holder.
    const ours = holder === this.id && this.isOwnWrite(fetched.record);

    // D3: while leading, any other holder (also a forced release, also our identity written by another
    // process) ends leadership at once.
    if (phase === "renew" && !ours) return { ok: false, foreignHolder: holder };
    // Still ours, but someone asked us to hand over: do not renew (that would erase the request); end
    // leadership so the work stops, then release. Standbys saw the record change, so none of them
    // takes over before our release or a full lease duration, whichever comes first.
    const preferred = fetched.record.preferredHolder;
    if (phase === "renew" && preferred !== undefined && preferred !== "" && preferred !== this.id) return { ok: false, handover: true };

    // 4. Yield to a valid lease held by someone else. An empty holder is always acquirable. A lock that
    //    checks our identity itself (the file lock: by process liveness) decides in its update.
    const takeAsOurs = ours || (holder === this.id && this.lock.guardsOwnIdentity === true);
    if (holder !== "" && this.isLeaseValid(now) && !takeAsOurs) {
      if (holder === this.id) this.reportIdentityInUse(fetched.raw, now);
      return { ok: false };
    }

    // 5. Renewal keeps acquireTime and the term; every acquisition starts a new term (D7), also when
    //    the same identity re-acquires after a restart or a lapse, and never below a term seen before.
    let slowPath = false;
    if (phase === "renew") {
      desired.acquireTime = fetched.record.acquireTime;
      desired.leaderTransitions = fetched.record.leaderTransitions;
      this.metrics.slowpathExercised(this.name);
      slowPath = true;
    } else {
      desired.leaderTransitions = Math.max(fetched.record.leaderTransitions, this.highestTermSeen) + 1;
    }

    // 6. Write (compare-and-swap against what we just read).
    const sent = this.clock.now();
    try {
      await this.write("update", phase, desired, signal);
    } catch (error) {
      return { ok: false, error };
    }
    this.wrote(desired, sent, phase);
    return { ok: true, slowPath };
  }

  /**
   * The record is gone (file removed, `kubectl delete lease`, Redis data lost).
   *
   * While leading (D10) we re-create it at once with our own term and acquireTime: the token never goes
   * back, and a candidate that had seen the record waits a lease duration from the deletion and so
   * sees ours first. A candidate that had seen a record waits a lease duration from when it first found
   * it deleted (a holder it never saw may have written just before the deletion), then re-creates it
   * with the highest term it has seen + 1. Only a candidate that never saw a record creates at once.
   */
  private async recreate(desired: LeaderElectionRecord, signal: AbortSignal | undefined, phase: Phase): Promise<AttemptResult> {
    const now = this.clock.now();
    if (phase === "renew") {
      desired.acquireTime = this.observedRecord.acquireTime;
      desired.leaderTransitions = this.termState?.term ?? Math.max(0, this.highestTermSeen);
      this.emit({ type: "lease_deleted", lock: this.lock.describe(), leading: true, recreateInMs: 0 });
    } else if (this.seenRecord) {
      const first = this.deletedSince === undefined;
      this.deletedSince ??= now;
      const waitMs = Math.max(this.observedRecord.leaseDurationSeconds * 1000, effectiveLeaseDurationMs(this.config.leaseDuration));
      const leftMs = this.deletedSince + waitMs - now;
      if (first) this.emit({ type: "lease_deleted", lock: this.lock.describe(), leading: false, recreateInMs: Math.max(0, leftMs) });
      if (leftMs > 0) return { ok: false };
      desired.leaderTransitions = this.highestTermSeen + 1;
    }
    const sent = this.clock.now();
    try {
      await this.write("create", phase, desired, signal);
    } catch (error) {
      return { ok: false, error };
    }
    this.deletedSince = undefined;
    this.wrote(desired, sent, phase);
    return { ok: true };
  }

  /** A write of ours: remembered before it is sent, since a lost answer may still have applied it. */
  private write(op: "create" | "update", phase: Phase, record: LeaderElectionRecord, signal: AbortSignal | undefined): Promise<void> {
    this.ownWrites.push(record);
    if (this.ownWrites.length > OWN_WRITES_KEPT) this.ownWrites.shift();
    return this.call(op, phase, signal, (s) => (op === "create" ? this.lock.create(record, s) : this.lock.update(record, s)));
  }

  /**
   * Every lock call races `signal`: when it aborts, the call is abandoned (not awaited) and rejects at
   * once with the signal's reason, so a lock that ignores its signal (a hung exec credential plugin, a
   * dead socket) can never delay a stop or a cancel. What the abandoned call does later is ignored:
   * a write it still applies is only one more record naming us that followers wait out.
   */
  private call<T>(op: LockOp, phase: Phase | "release", signal: AbortSignal | undefined, fn: (signal?: AbortSignal) => Promise<T>): Promise<T> {
    if (signal === undefined) return fn(undefined);
    if (signal.aborted) return Promise.reject(signal.reason as Error);
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const onAbort = (): void => {
        if (done) return;
        done = true;
        this.emit({ type: "call_abandoned", lock: this.lock.describe(), op, phase, reason: signal.reason });
        reject(signal.reason as Error);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      let pending: Promise<T>;
      try {
        pending = fn(signal);
      } catch (error) {
        pending = Promise.reject(error as Error);
      }
      pending.then(
        (value) => {
          if (done) return;
          done = true;
          signal.removeEventListener("abort", onAbort);
          resolve(value);
        },
        (error: unknown) => {
          if (done) return;
          done = true;
          signal.removeEventListener("abort", onAbort);
          reject(error as Error);
        },
      );
    });
  }

  private isOwnWrite(record: LeaderElectionRecord): boolean {
    return this.ownWrites.some((own) => sameRecord(own, record));
  }

  private sawRecord(record: LeaderElectionRecord): void {
    this.seenRecord = true;
    if (record.leaderTransitions > this.highestTermSeen) this.highestTermSeen = record.leaderTransitions;
  }

  private reportIdentityInUse(raw: string, now: number): void {
    if (this.reportedIdentityRaw === raw) return;
    this.reportedIdentityRaw = raw;
    this.emit({
      type: "identity_in_use",
      lock: this.lock.describe(),
      identity: this.id,
      waitMs: Math.max(0, this.observedTime + this.observedRecord.leaseDurationSeconds * 1000 - now),
    });
  }

  private wrote(record: LeaderElectionRecord, sentAt: number, phase: Phase): void {
    this.observedRecord = record;
    this.observedTime = this.clock.now();
    this.sawRecord(record);
    if (phase === "renew" && this.termState?.active === true && this.termState.term === record.leaderTransitions) {
      this.termState.renewed(sentAt);
    } else {
      this.termState = new Term(record.leaderTransitions, sentAt, this.config.leaseDuration, this.config.renewDeadline);
    }
  }

  private isLeaseValid(now: number): boolean {
    return this.observedTime + this.observedRecord.leaseDurationSeconds * 1000 > now;
  }

  /**
   * Release (client-go `release`, with D5): write the released record only if the freshly read record
   * is one we wrote, by compare-and-swap; retry on Conflict; give up after RD.
   */
  private async release(): Promise<boolean> {
    const describe = this.lock.describe();
    const timeout = new AbortController();
    const timer = this.clock.setTimer(
      () => timeout.abort(new Error(`release timed out after ${this.config.renewDeadline}ms`)),
      this.config.renewDeadline,
    );
    try {
      while (!timeout.signal.aborted) {
        let fetched: { record: LeaderElectionRecord; raw: string };
        try {
          fetched = await this.call("get", "release", timeout.signal, (s) => this.lock.get(s));
        } catch (error) {
          this.emit({ type: "release_failed", lock: describe, error });
          return false;
        }
        if (fetched.record.holderIdentity !== this.id || !this.isOwnWrite(fetched.record)) return true;
        const wall = this.clock.wallNow();
        const released: LeaderElectionRecord = {
          holderIdentity: "",
          leaseDurationSeconds: 1,
          acquireTime: wall,
          renewTime: wall,
          leaderTransitions: fetched.record.leaderTransitions,
        };
        try {
          await this.call("update", "release", timeout.signal, (s) => this.lock.update(released, s));
        } catch (error) {
          if (error instanceof ConflictError && !timeout.signal.aborted) continue;
          this.emit({ type: "release_failed", lock: describe, error });
          return false;
        }
        this.observedRecord = released;
        this.observedTime = this.clock.now();
        this.emit({ type: "released", lock: describe });
        return true;
      }
      this.emit({ type: "release_failed", lock: describe, error: timeout.signal.reason });
      return false;
    } finally {
      timer.cancel();
    }
  }

  private maybeReportTransition(): void {
    const holder = this.observedRecord.holderIdentity;
    if (holder === this.reportedLeader) return;
    this.reportedLeader = holder;
    this.emit({ type: "new_leader", lock: this.lock.describe(), identity: holder });
    const onNewLeader = this.callbacks.onNewLeader;
    if (onNewLeader) {
      queueMicrotask(() => {
        try {
          onNewLeader.call(this.callbacks, holder);
        } catch (error) {
          this.emit({ type: "callback_error", lock: this.lock.describe(), callback: "onNewLeader", error });
        }
      });
    }
  }

  private emit(event: ElectionEvent): void {
    try {
      this.config.onEvent?.(event);
    } catch {
      // A logging hook must never break the election.
    }
  }
}

/**
 * client-go `RunOrDie`: validates (throws `ElectionConfigError`), wires the WatchDog, runs one campaign.
 */
export async function runOrDie(signal: AbortSignal, config: ElectionConfig): Promise<void> {
  const elector = new LeaderElector(config);
  config.watchDog?.setLeaderElection(elector);
  await elector.run(signal);
}
