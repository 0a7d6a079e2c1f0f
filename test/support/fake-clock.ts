import { seededRandom } from "../../src/election/clock.js";
import type { Clock, TimerHandle } from "../../src/election/clock.js";

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
}

export interface FakeClockOptions {
  /** What `wallNow()` returns while `now()` is 0. */
  wallBase?: Date;
  /** Seed of `random()`, so jitter is reproducible. */
  seed?: number;
  /**
   * How many macrotask turns `flush()` lets pass. Each turn drains every pending promise job, so one is
   * usually enough; a few more cover code that hops through `setImmediate` itself.
   */
  flushTurns?: number;
}

/**
 * A `Clock` whose time only moves when a test says so. Timers fire in time order (ties in the order
 * they were set), and pending promise jobs run between timers, so async code driven by timers runs to
 * its next timer before time moves on. Nothing here sleeps for real.
 */
export class FakeClock implements Clock {
  private t = 0;
  private wallBaseMs: number;
  private wallOffsetMs = 0;
  private seq = 0;
  private timers: PendingTimer[] = [];
  private readonly rng: () => number;
  private readonly flushTurns: number;

  constructor(options: FakeClockOptions = {}) {
    this.wallBaseMs = (options.wallBase ?? new Date("2024-05-01T12:00:00.000Z")).getTime();
    this.rng = seededRandom(options.seed ?? 1);
    this.flushTurns = options.flushTurns ?? 5;
  }

  now(): number {
    return this.t;
  }

  wallNow(): Date {
    return new Date(this.wallBaseMs + this.t + this.wallOffsetMs);
  }

  /** Moves the wall clock only (an NTP step, a VM resume); `now()` and timers are unaffected. */
  jumpWall(ms: number): void {
    this.wallOffsetMs += ms;
  }

  /** Makes `wallNow()` return `date` at this instant, leaving `now()` alone. */
  setWall(date: Date): void {
    this.wallOffsetMs = date.getTime() - this.wallBaseMs - this.t;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    // A timer that can never fire is not kept, so it does not show up as pending work.
    if (ms === Infinity) return { cancel: () => {} };
    const timer: PendingTimer = { at: this.t + (ms > 0 ? ms : 0), seq: this.seq++, fn };
    this.timers.push(timer);
    return {
      cancel: () => {
        const i = this.timers.indexOf(timer);
        if (i >= 0) this.timers.splice(i, 1);
      },
    };
  }

  random(): number {
    return this.rng();
  }

  /** Number of timers not yet fired or cancelled. */
  pendingTimers(): number {
    return this.timers.length;
  }

  /** When the earliest pending timer is due, or undefined when none is pending. */
  nextTimerAt(): number | undefined {
    const next = this.earliest();
    return next?.at;
  }

  /** Lets pending promise jobs (and anything they chain without a timer) run. Time does not move. */
  async flush(): Promise<void> {
    for (let i = 0; i < this.flushTurns; i++) {
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /** Moves time forward by `ms`, firing due timers in order and flushing promise jobs after each. */
  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`FakeClock.advance: ms must be >= 0, got ${ms}`);
    await this.advanceTo(this.t + ms);
  }

  /** Moves time forward to the absolute instant `target` (never backwards). */
  async advanceTo(target: number): Promise<void> {
    if (target < this.t) throw new RangeError(`FakeClock.advanceTo: ${target} is before now (${this.t})`);
    await this.flush();
    for (;;) {
      const next = this.earliest();
      if (next === undefined || next.at > target) break;
      this.timers.splice(this.timers.indexOf(next), 1);
      this.t = Math.max(this.t, next.at);
      next.fn();
      await this.flush();
    }
    this.t = target;
    await this.flush();
  }

  /**
   * Advances timer by timer until `predicate()` holds; resolves with the time at which it first held.
   * Throws (after advancing `maxMs`) if it does not hold within `maxMs`.
   */
  async runUntil(predicate: () => boolean, maxMs: number, what = "condition"): Promise<number> {
    const deadline = this.t + maxMs;
    await this.flush();
    while (!predicate()) {
      const next = this.nextTimerAt();
      if (next === undefined || next > deadline) {
        await this.advanceTo(deadline);
        if (predicate()) return this.t;
        throw new Error(`FakeClock.runUntil: ${what} did not hold within ${maxMs}ms (now ${this.t}ms)`);
      }
      await this.advanceTo(next);
    }
    return this.t;
  }

  private earliest(): PendingTimer | undefined {
    let best: PendingTimer | undefined;
    for (const timer of this.timers) {
      if (best === undefined || timer.at < best.at || (timer.at === best.at && timer.seq < best.seq)) best = timer;
    }
    return best;
  }
}
