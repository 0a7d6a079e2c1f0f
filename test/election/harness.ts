/**
 * Shared set-up for the election-core tests: a fake clock, a memory store, and candidates whose
 * callbacks, metrics, lock calls and events all land in one ordered timeline.
 */
import { FakeClock } from "../support/fake-clock.js";
import { MemoryLock, MemoryStore } from "../../src/locks/memory/index.js";
import type { MemoryLockOptions } from "../../src/locks/memory/index.js";
import { LeaderElector } from "../../src/election/elector.js";
import type { ElectionConfig } from "../../src/election/config.js";
import type { ElectionEvent } from "../../src/election/events.js";
import type { MetricsProvider } from "../../src/election/metrics.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import type { ResourceLock } from "../../src/election/lock.js";

export const WALL_BASE = new Date("2024-05-01T12:00:00.000Z");

export const S = 1000;

export interface Env {
  clock: FakeClock;
  store: MemoryStore;
}

export function newEnv(seed = 1): Env {
  return { clock: new FakeClock({ wallBase: WALL_BASE, seed }), store: new MemoryStore("foo/bar") };
}

/** `WALL_BASE + ms` — the wall time the fake clock shows at monotonic time `ms` (no jumps). */
export function wallAt(ms: number): Date {
  return new Date(WALL_BASE.getTime() + ms);
}

export function record(fields: Partial<LeaderElectionRecord> & { holderIdentity: string }): LeaderElectionRecord {
  return {
    leaseDurationSeconds: 15,
    acquireTime: WALL_BASE,
    renewTime: WALL_BASE,
    leaderTransitions: 0,
    ...fields,
  };
}

/** A `MetricsProvider` that writes `leaderOn:<name>` etc. into a log. */
export class RecordingMetrics implements MetricsProvider {
  constructor(private readonly sink: string[]) {}
  leaderOn(name: string): void {
    this.sink.push(`metric:leaderOn:${name}`);
  }
  leaderOff(name: string): void {
    this.sink.push(`metric:leaderOff:${name}`);
  }
  slowpathExercised(name: string): void {
    this.sink.push(`metric:slowpath:${name}`);
  }
}

export interface CandidateOptions {
  leaseDuration?: number;
  renewDeadline?: number;
  retryPeriod?: number;
  releaseOnCancel?: boolean;
  name?: string;
  lock?: MemoryLockOptions;
  /**
   * How long the leading work takes to stop after its signal aborts (fake ms; 0 = at once,
   * Infinity = never). Default 0.
   */
  workStopDelay?: number;
  /** Reject (instead of resolving) when the work stops. */
  workRejects?: boolean;
  /** Replace the default work entirely. */
  work?: (signal: AbortSignal) => void | Promise<void>;
  /** Called after the default bookkeeping of onStoppedLeading. */
  onStopped?: () => void;
  /** What the elector gets instead of the memory lock (a wrapper around it). */
  wrapLock?: (lock: MemoryLock) => ResourceLock;
}

export interface RunHandle {
  controller: AbortController;
  done: Promise<void>;
  settled: boolean;
  error: unknown;
  /** `clock.now()` when run's promise settled. */
  settledAt: number | undefined;
}

/** One election participant: a lock on the shared store, an elector, and everything it did. */
export class Candidate {
  readonly lock: MemoryLock;
  readonly le: LeaderElector;
  /** Ordered: `lock:<op>`, `event:<msg>`, `metric:…`, `started`, `stopped`, `newLeader:<id>`, `work:aborted`, `work:settled`. */
  readonly timeline: string[] = [];
  readonly newLeaders: string[] = [];
  readonly electionEvents: ElectionEvent[] = [];
  started = 0;
  stopped = 0;
  leadingSignal: AbortSignal | undefined;
  /** `clock.now()` when onStartedLeading was called / its signal aborted / the work settled. */
  startedAt: number | undefined;
  abortedAt: number | undefined;
  workSettledAt: number | undefined;
  stoppedAt: number | undefined;
  readonly config: ElectionConfig;

  constructor(
    readonly env: Env,
    readonly identity: string,
    options: CandidateOptions = {},
  ) {
    const { clock } = env;
    this.lock = new MemoryLock(env.store, identity, { clock, ...options.lock });
    this.lock.onCall = (op) => this.timeline.push(`lock:${op}`);
    this.lock.onRecordEvent = (msg) => this.timeline.push(`event:${msg}`);
    const stopDelay = options.workStopDelay ?? 0;
    const defaultWork = (signal: AbortSignal): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        signal.addEventListener(
          "abort",
          () => {
            if (stopDelay === Infinity) return;
            const finish = (): void => (options.workRejects ? reject(new Error("work stopped")) : resolve());
            if (stopDelay <= 0) finish();
            else clock.setTimer(finish, stopDelay);
          },
          { once: true },
        );
      });
    const work = options.work ?? defaultWork;
    this.config = {
      lock: options.wrapLock ? options.wrapLock(this.lock) : this.lock,
      leaseDuration: options.leaseDuration ?? 15 * S,
      renewDeadline: options.renewDeadline ?? 10 * S,
      retryPeriod: options.retryPeriod ?? 2 * S,
      releaseOnCancel: options.releaseOnCancel ?? false,
      name: options.name ?? "foo",
      clock,
      metrics: new RecordingMetrics(this.timeline),
      onEvent: (e) => this.electionEvents.push(e),
      callbacks: {
        onStartedLeading: (signal) => {
          this.started += 1;
          this.startedAt = clock.now();
          this.leadingSignal = signal;
          this.timeline.push("started");
          signal.addEventListener(
            "abort",
            () => {
              this.abortedAt = clock.now();
              this.timeline.push("work:aborted");
            },
            { once: true },
          );
          const result = work(signal);
          if (result instanceof Promise) {
            result.then(
              () => this.workSettled(),
              () => this.workSettled(),
            );
          } else {
            this.workSettled();
          }
          return result;
        },
        onStoppedLeading: () => {
          this.stopped += 1;
          this.stoppedAt = clock.now();
          this.timeline.push("stopped");
          options.onStopped?.();
        },
        onNewLeader: (id) => {
          this.newLeaders.push(id);
          this.timeline.push(`newLeader:${id}`);
        },
      },
    };
    this.le = new LeaderElector(this.config);
  }

  /** Starts `run` with a fresh AbortController; the handle records when and how it settled. */
  run(): RunHandle {
    const controller = new AbortController();
    const handle: RunHandle = {
      controller,
      done: Promise.resolve(),
      settled: false,
      error: undefined,
      settledAt: undefined,
    };
    handle.done = this.le.run(controller.signal).then(
      () => {
        handle.settled = true;
        handle.settledAt = this.env.clock.now();
      },
      (err: unknown) => {
        handle.settled = true;
        handle.error = err;
        handle.settledAt = this.env.clock.now();
      },
    );
    return handle;
  }

  /** True while onStartedLeading has been called and its signal has not aborted. */
  get leading(): boolean {
    return this.leadingSignal !== undefined && !this.leadingSignal.aborted;
  }

  /** Lock operations made after `mark` (an index into `lock.log`). */
  callsSince(mark: number): string[] {
    return this.lock.calls.slice(mark);
  }

  /** Timeline entries matching a prefix, in order. */
  entries(prefix: string): string[] {
    return this.timeline.filter((e) => e.startsWith(prefix));
  }

  private workSettled(): void {
    this.workSettledAt = this.env.clock.now();
    this.timeline.push("work:settled");
  }
}

/** Aborts a run and lets fake time pass until it settles (throws if it does not within `maxMs`). */
export async function abortAndWait(env: Env, h: RunHandle, maxMs = 60 * S): Promise<void> {
  h.controller.abort();
  await env.clock.runUntil(() => h.settled, maxMs, "run to settle after abort");
  await h.done;
}

/** Start times of the calls of one op. */
export function startsOf(lock: MemoryLock, op: string, from = 0): number[] {
  return lock.log.filter((c) => c.op === op && c.start >= from).map((c) => c.start);
}

type LockOp = "get" | "create" | "update";

/**
 * A lock whose chosen calls never settle and ignore their abort signal, like a request stuck in a
 * credential plugin or on a dead socket the client never times out. Other calls go to the memory lock.
 */
export class StuckLock implements ResourceLock {
  readonly stuck = new Set<LockOp>();
  /** Calls that were made while stuck (they never answer). */
  readonly stuckCalls: LockOp[] = [];
  guardsOwnIdentity?: boolean;

  constructor(readonly inner: MemoryLock) {}

  stick(...ops: LockOp[]): void {
    for (const op of ops.length > 0 ? ops : (["get", "create", "update"] as const)) this.stuck.add(op);
  }

  get(signal?: AbortSignal): Promise<{ record: LeaderElectionRecord; raw: string }> {
    return this.maybeStuck("get") ?? this.inner.get(signal);
  }

  create(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    return this.maybeStuck("create") ?? this.inner.create(record, signal);
  }

  update(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    return this.maybeStuck("update") ?? this.inner.update(record, signal);
  }

  recordEvent(message: string): void {
    this.inner.recordEvent(message);
  }

  identity(): string {
    return this.inner.identity();
  }

  describe(): string {
    return this.inner.describe();
  }

  private maybeStuck(op: LockOp): Promise<never> | undefined {
    if (!this.stuck.has(op)) return undefined;
    this.stuckCalls.push(op);
    return new Promise<never>(() => {});
  }
}
