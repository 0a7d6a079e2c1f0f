/**
 * In-process candidates for the backends' election tests: each runs a real `LeaderElector` on its own
 * lock (own connections), records when it led in a shared ledger, and can stop cleanly or "crash"
 * (connections cut, no release), so the tests can check that leadership intervals never overlap and
 * terms strictly increase. Each backend's harness only says how to open its lock.
 */
import { LeaderElector } from "../../src/election/elector.js";
import type { ElectionEvent } from "../../src/election/events.js";
import type { ResourceLock } from "../../src/election/lock.js";

export interface Timings {
  leaseDuration: number;
  renewDeadline: number;
  retryPeriod: number;
}

export interface Interval {
  id: string;
  term: number | undefined;
  token: number | undefined;
  start: number;
  end: number | undefined;
}

/** Every leadership interval of every candidate, on one monotonic clock. */
export class Ledger {
  readonly intervals: Interval[] = [];

  begin(id: string, term: number | undefined, token: number | undefined): Interval {
    const interval: Interval = { id, term, token, start: performance.now(), end: undefined };
    this.intervals.push(interval);
    return interval;
  }

  /** Number of intervals open right now. */
  openCount(): number {
    return this.intervals.filter((i) => i.end === undefined).length;
  }

  /** Throws if two intervals overlap (an open one counts as lasting until now). */
  assertNoOverlap(): void {
    const sorted = [...this.intervals].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1] as Interval;
      const cur = sorted[i] as Interval;
      const prevEnd = prev.end ?? performance.now();
      if (cur.start < prevEnd) {
        throw new Error(`two leaders at once: ${prev.id} (term ${prev.term}) until ${prevEnd.toFixed(0)}, ${cur.id} (term ${cur.term}) from ${cur.start.toFixed(0)}`);
      }
    }
  }

  terms(): (number | undefined)[] {
    return [...this.intervals].sort((a, b) => a.start - b.start).map((i) => i.term);
  }
}

/**
 * onStartedLeading of the backend elector tests: records the term in the ledger from its start until
 * its signal aborts, and reports the open interval (undefined once it ended) through `setCurrent`.
 */
export function recordLeadership(
  ledger: Ledger,
  id: string,
  term: () => number | undefined,
  token: () => number | undefined,
  setCurrent: (interval: Interval | undefined) => void,
): (signal: AbortSignal) => Promise<void> {
  return (signal) => {
    const interval = ledger.begin(id, term(), token());
    setCurrent(interval);
    return new Promise<void>((resolve) => {
      signal.addEventListener(
        "abort",
        () => {
          interval.end = performance.now();
          setCurrent(undefined);
          resolve();
        },
        { once: true },
      );
    });
  };
}

/** What the candidate needs of a backend's lock beyond the election interface. */
export interface TestLock extends ResourceLock {
  fencingToken(): number | undefined;
  close(): Promise<void>;
}

export interface CandidateOptions {
  /** Loop `run` after losing (the CLI's `--on-lost campaign`). Default true. */
  campaignAgain?: boolean;
  releaseOnCancel?: boolean;
}

export class ElectorCandidate<L extends TestLock> {
  readonly events: { at: number; event: ElectionEvent }[] = [];
  lock: L | undefined;
  elector: LeaderElector | undefined;
  current: Interval | undefined;
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly open: () => Promise<L>,
    readonly name: string,
    readonly id: string,
    readonly timings: Timings,
    readonly ledger: Ledger,
    readonly candidateOptions: CandidateOptions = {},
  ) {}

  async start(): Promise<this> {
    const lock = await this.open();
    this.lock = lock;
    const elector: LeaderElector = new LeaderElector({
      lock,
      ...this.timings,
      releaseOnCancel: this.candidateOptions.releaseOnCancel ?? true,
      name: this.name,
      callbacks: {
        onStartedLeading: recordLeadership(this.ledger, this.id, () => elector.term(), () => lock.fencingToken(), (interval) => {
          this.current = interval;
        }),
        onStoppedLeading: () => undefined,
      },
      onEvent: (event) => this.events.push({ at: performance.now(), event }),
    });
    this.elector = elector;
    const signal = this.stopper.signal;
    this.loop = (async () => {
      do {
        await elector.run(signal);
      } while (!signal.aborted && (this.candidateOptions.campaignAgain ?? true));
    })();
    return this;
  }

  get leading(): boolean {
    return this.current !== undefined;
  }

  /** Cancels the campaign (releasing if leading), waits for it to end, closes the connections. */
  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
    await this.lock?.close();
  }

  /** Like a SIGKILL: connections cut first, so nothing is released; the lease stays until it expires. */
  async crash(): Promise<void> {
    await this.lock?.close();
    this.stopper.abort();
    await this.loop;
  }

  /** Whether the campaign loop has ended (without campaignAgain: after the first loss). */
  async finished(timeoutMs: number): Promise<boolean> {
    return Promise.race([this.loop?.then(() => true) ?? Promise.resolve(true), delay(timeoutMs).then(() => false)]);
  }

  eventsOf<T extends ElectionEvent["type"]>(type: T): { at: number; event: Extract<ElectionEvent, { type: T }> }[] {
    return this.events.filter((e): e is { at: number; event: Extract<ElectionEvent, { type: T }> } => e.event.type === type);
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` every 10 ms; resolves with the time it became true, or undefined on timeout. */
export async function until(check: () => boolean, timeoutMs: number): Promise<number | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (check()) return performance.now();
    if (performance.now() > deadline) return undefined;
    await delay(10);
  }
}

export async function startAll<C extends { start(): Promise<C> }>(candidates: C[]): Promise<C[]> {
  return Promise.all(candidates.map((c) => c.start()));
}

export function leaderOf<C extends { leading: boolean }>(candidates: C[]): C[] {
  return candidates.filter((c) => c.leading);
}
