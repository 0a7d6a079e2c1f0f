import { sleep, systemClock, type Clock, type TimerHandle } from "./clock.js";
import { validateElectionConfig, JITTER_FACTOR, type ElectionConfig, type LeaderCallbacks } from "./config.js";
import type { ElectionEvent, LostReason } from "./events.js";
import { ConflictError, NotFoundError, type ResourceLock } from "./lock.js";
import { currentMetricsProvider, type MetricsProvider } from "./metrics.js";
import { emptyRecord, type LeaderElectionRecord } from "./record.js";

/** The reason an `onStartedLeading` signal aborts with. */
export class LeadershipEndedError extends Error {
  constructor(readonly reason: LostReason) {
    super(`leadership ended: ${reason.replace("_", " ")}`);
    this.name = "LeadershipEndedError";
  }
}

type Phase = "acquire" | "renew";

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

  /** Monotonic time at which the last successful write (acquire or renew) was sent. */
  private lastRenewSent = Number.NEGATIVE_INFINITY;
  private currentTerm: number | undefined;
  private leading = false;
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
    return this.currentTerm;
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

    const reason = await this.renew(runSignal);
    this.leading = false;
    leadingSignal.abort(new LeadershipEndedError(reason));
    this.metrics.leaderOff(this.name);
    this.emit({ type: "lost", lock: this.lock.describe(), reason, holder: this.observedRecord.holderIdentity });

    // Nobody can take over before lastRenewSent + LD. Past that our work may overlap a successor's no
    // matter what we do, so we never release on its behalf: the lease is left to expire.
    const safetyDeadline = this.lastRenewSent + this.config.leaseDuration;
    if (!settled) await this.settleBy(work, safetyDeadline);
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

  /** Acquire loop: first attempt at once, then jittered in [RP, 2.2·RP), woken early by `watch`. */
  private async acquire(signal: AbortSignal): Promise<boolean> {
    const describe = this.lock.describe();
    this.emit({ type: "campaigning", lock: describe });
    const stopWatch = new AbortController();
    let woken = false;
    let wake: (() => void) | undefined;
    if (this.lock.watch) {
      this.lock.watch(() => {
        woken = true;
        wake?.();
      }, stopWatch.signal);
    }
    try {
      while (!signal.aborted) {
        woken = false;
        const result = await this.attempt(signal, "acquire");
        this.maybeReportTransition();
        if (result.ok) {
          this.lock.recordEvent("became leader");
          this.metrics.leaderOn(this.name);
          this.emit({ type: "acquired", lock: describe, term: this.currentTerm ?? 0, record: this.observed(), sentAt: this.lastRenewSent });
          return true;
        }
        if (signal.aborted) break;
        this.emit({
          type: "acquire_failed",
          lock: describe,
          error: result.error,
          holder: this.observedRecord.holderIdentity,
        });
        if (woken) continue;
        const delay = this.config.retryPeriod * (1 + this.clock.random() * JITTER_FACTOR);
        await new Promise<void>((resolve) => {
          const timer: TimerHandle = this.clock.setTimer(done, delay);
          function done(): void {
            timer?.cancel();
            signal.removeEventListener("abort", done);
            wake = undefined;
            resolve();
          }
          wake = done;
          signal.addEventListener("abort", done, { once: true });
        });
      }
      return false;
    } finally {
      stopWatch.abort();
    }
  }

  /**
   * Renew loop. Rounds start RP after the previous success (the first at once, as client-go's
   * `wait.Until`); within a round attempts follow an RP ticker. Leadership ends when the run is
   * cancelled, when a read shows another holder, or at lastRenewSent + RD by a timer that no hung
   * request can delay.
   */
  private async renew(runSignal: AbortSignal): Promise<LostReason> {
    const rp = this.config.retryPeriod;
    const rd = this.config.renewDeadline;
    const stop = new AbortController();
    let reason: LostReason | undefined;
    const end = (why: LostReason): void => {
      if (reason !== undefined) return;
      reason = why;
      stop.abort(new LeadershipEndedError(why));
    };
    const onCancel = (): void => end("cancelled");
    runSignal.addEventListener("abort", onCancel, { once: true });
    if (runSignal.aborted) end("cancelled");

    let deadlineTimer: TimerHandle | undefined;
    const armDeadline = (): void => {
      deadlineTimer?.cancel();
      const remaining = this.lastRenewSent + rd - this.clock.now();
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
              sentAt: this.lastRenewSent,
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
            deadlineInMs: this.lastRenewSent + rd - this.clock.now(),
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

  /** client-go `tryAcquireOrRenew`, phase-aware for the term (D7) and the foreign-holder rule (D3). */
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
        await this.lock.update(desired, signal);
        this.wrote(desired, sent);
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
      fetched = await this.lock.get(signal);
    } catch (error) {
      if (!(error instanceof NotFoundError)) return { ok: false, error };
      if (phase === "renew") {
        // Deleted under us: recreate, keeping our term so the fencing token never goes backwards.
        desired.acquireTime = this.observedRecord.acquireTime;
        desired.leaderTransitions = this.currentTerm ?? 0;
      }
      const sent = this.clock.now();
      try {
        await this.lock.create(desired, signal);
      } catch (createError) {
        return { ok: false, error: createError };
      }
      this.wrote(desired, sent);
      return { ok: true };
    }

    // 3. Observe: observed time moves only when the bytes change.
    if (fetched.raw !== this.observedRaw) {
      this.observedRecord = fetched.record;
      this.observedRaw = fetched.raw;
      this.observedTime = this.clock.now();
    }
    const holder = fetched.record.holderIdentity;

    // D3: while leading, any other holder (also a forced release) ends leadership at once.
    if (phase === "renew" && holder !== this.id) return { ok: false, foreignHolder: holder };
    // Still ours, but someone asked us to hand over: do not renew (that would erase the request); end
    // leadership so the work stops, then release. Standbys saw the record change, so none of them
    // takes over before our release or a full lease duration, whichever comes first.
    const preferred = fetched.record.preferredHolder;
    if (phase === "renew" && preferred !== undefined && preferred !== "" && preferred !== this.id) return { ok: false, handover: true };

    // 4. Yield to a valid lease held by someone else. An empty holder is always acquirable.
    if (holder !== "" && this.isLeaseValid(now) && !this.isLeader()) {
      return { ok: false };
    }

    // 5. Renewal keeps acquireTime and the term; every acquisition starts a new term (D7), also when
    //    the same identity re-acquires after a restart or a lapse.
    let slowPath = false;
    if (phase === "renew") {
      desired.acquireTime = fetched.record.acquireTime;
      desired.leaderTransitions = fetched.record.leaderTransitions;
      this.metrics.slowpathExercised(this.name);
      slowPath = true;
    } else {
      desired.leaderTransitions = fetched.record.leaderTransitions + 1;
    }

    // 6. Write (compare-and-swap against what we just read).
    const sent = this.clock.now();
    try {
      await this.lock.update(desired, signal);
    } catch (error) {
      return { ok: false, error };
    }
    this.wrote(desired, sent);
    return { ok: true, slowPath };
  }

  private wrote(record: LeaderElectionRecord, sentAt: number): void {
    this.observedRecord = record;
    this.observedTime = this.clock.now();
    this.lastRenewSent = sentAt;
    this.currentTerm = record.leaderTransitions;
  }

  private isLeaseValid(now: number): boolean {
    return this.observedTime + this.observedRecord.leaseDurationSeconds * 1000 > now;
  }

  /**
   * Release (client-go `release`, with D5): write the released record only if the freshly read holder is
   * us, by compare-and-swap; retry on Conflict; give up after RD.
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
          fetched = await this.lock.get(timeout.signal);
        } catch (error) {
          this.emit({ type: "release_failed", lock: describe, error });
          return false;
        }
        if (fetched.record.holderIdentity !== this.id) return true;
        const wall = this.clock.wallNow();
        const released: LeaderElectionRecord = {
          holderIdentity: "",
          leaseDurationSeconds: 1,
          acquireTime: wall,
          renewTime: wall,
          leaderTransitions: fetched.record.leaderTransitions,
        };
        try {
          await this.lock.update(released, timeout.signal);
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
