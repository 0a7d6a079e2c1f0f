/**
 * Time as the election core sees it. Injected so the core is tested deterministically without sleeping.
 *
 * `now()` is monotonic and is the only source for observed time and deadlines; a wall-clock jump must
 * never shorten or lengthen a lease. `wallNow()` is used only for the timestamps written into records.
 */
export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Monotonic milliseconds since an arbitrary origin. */
  now(): number;
  /** Wall-clock time, for timestamps written into records only. */
  wallNow(): Date;
  /** Calls `fn` once after `ms` milliseconds of monotonic time. */
  setTimer(fn: () => void, ms: number): TimerHandle;
  /** Uniform in [0, 1); seeded in tests so jitter is reproducible. */
  random(): number;
}

/**
 * The longest delay `setTimeout` honours (2^31 − 1 ms, about 24.8 days). Node fires a longer one after
 * 1 ms instead (with a TimeoutOverflowWarning): a lease or grace timer would end leadership, or give up
 * waiting, at once.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export class SystemClock implements Clock {
  now(): number {
    return performance.now();
  }

  wallNow(): Date {
    return new Date();
  }

  /**
   * Delays above `MAX_TIMER_MS` are waited in steps of at most `MAX_TIMER_MS`, so the timer fires when
   * asked, not at once; `Infinity` never fires.
   */
  setTimer(fn: () => void, ms: number): TimerHandle {
    if (ms === Infinity) return { cancel: () => {} };
    let t: ReturnType<typeof setTimeout>;
    const arm = (left: number): void => {
      const step = Math.min(left, MAX_TIMER_MS);
      t = setTimeout(() => (left > step ? arm(left - step) : fn()), step);
    };
    arm(Math.max(0, ms));
    return { cancel: () => clearTimeout(t) };
  }

  random(): number {
    return Math.random();
  }
}

export const systemClock: Clock = new SystemClock();

/** Resolves after `ms` on `clock`, or rejects with the signal's reason when it aborts first. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      timer.cancel();
      reject(signal?.reason);
    };
    const timer = clock.setTimer(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** mulberry32: a tiny seeded PRNG for reproducible jitter in tests and benchmarks. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
