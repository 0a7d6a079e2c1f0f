/**
 * An in-memory lock with the exact compare-and-swap semantics of client-go's LeaseLock, for tests of
 * code built on the elector (ours and library users'). Several `MemoryLock`s (one per identity) share
 * one `MemoryStore`, like several processes sharing one Lease.
 *
 * Test hooks: a call log, injectable failures per operation (an error, a hang until aborted, or an
 * error returned after the write was applied, i.e. a lost response), per-operation latency on an
 * injected clock, and recorded events.
 */
import { sleep } from "../../election/clock.js";
import type { Clock } from "../../election/clock.js";
import { AlreadyExistsError, ConflictError, LockError, NotFoundError } from "../../election/lock.js";
import type { ResourceLock, WatchHealth, WatchedRecord } from "../../election/lock.js";
import { recordToJSON } from "../../election/record.js";
import type { LeaderElectionRecord } from "../../election/record.js";

export type MemoryLockOp = "get" | "create" | "update";

/**
 * What an injected failure does: throw this error before touching the store; `"hang"` never answers
 * until the call's signal aborts; `{ error, afterApply: true }` applies the write, then throws anyway
 * (the response was lost, as when a request times out after the server committed it).
 */
export type MemoryLockFailure = Error | "hang" | { error: Error; afterApply: true };

export interface MemoryLockCall {
  op: MemoryLockOp;
  /** `clock.now()` when the call was made (0 without a clock). */
  start: number;
  /** `clock.now()` when it answered; undefined while in flight or if it never answers. */
  end?: number;
  outcome?: "ok" | "error";
}

export interface MemoryLockOptions {
  /** Needed for `latency`; also timestamps the call log. */
  clock?: Clock;
  /** Milliseconds each operation takes, on `clock`. The write is applied when the latency has passed. */
  latency?: Partial<Record<MemoryLockOp, number>>;
  /** Offer `watch()` (off by default, so the elector's plain retry loop is what gets exercised). */
  watch?: boolean;
  /**
   * Offer `watch()` with health: it reports `"connected"` while the store's watch channel is up
   * (`MemoryStore.setWatchConnected`) and announces every write with its record, as a healthy
   * notification stream does. Implies `watch`.
   */
  watchHealth?: boolean;
}

interface Watcher {
  onChange: (seen?: WatchedRecord) => void;
  /** Present for `watchHealth` subscribers: they get records, health, and nothing while disconnected. */
  onHealth?: (health: WatchHealth) => void;
}

function copyDate(d: Date | null): Date | null {
  return d === null ? null : new Date(d.getTime());
}

function copyRecord(r: LeaderElectionRecord): LeaderElectionRecord {
  const copy: LeaderElectionRecord = {
    holderIdentity: r.holderIdentity,
    leaseDurationSeconds: r.leaseDurationSeconds,
    acquireTime: copyDate(r.acquireTime),
    renewTime: copyDate(r.renewTime),
    leaderTransitions: r.leaderTransitions,
  };
  if (r.strategy !== undefined) copy.strategy = r.strategy;
  if (r.preferredHolder !== undefined) copy.preferredHolder = r.preferredHolder;
  return copy;
}

/** The raw form the elector compares: whole-second timestamps, like the Lease lock's raw bytes. */
export function memoryRaw(record: LeaderElectionRecord): string {
  return JSON.stringify(recordToJSON(record, 0));
}

/** The shared "server": one record (or none) and a version bumped by every write, like resourceVersion. */
export class MemoryStore {
  /** Every write in order: the version it produced and the record after it (undefined = deleted). */
  readonly history: { version: number; record: LeaderElectionRecord | undefined }[] = [];
  private record: LeaderElectionRecord | undefined;
  private ver = 0;
  private readonly watchers = new Set<Watcher>();
  private connected = true;

  /** `name` is what the locks' `describe()` returns. */
  constructor(readonly name = "memory") {}

  /** Version of the current state; every write (create, update, put, delete) increments it. */
  get version(): number {
    return this.ver;
  }

  /** A copy of the stored record, or undefined when there is none. */
  read(): LeaderElectionRecord | undefined {
    return this.record === undefined ? undefined : copyRecord(this.record);
  }

  /** The raw form of the stored record, as `get` would return it. */
  raw(): string | undefined {
    return this.record === undefined ? undefined : memoryRaw(this.record);
  }

  /**
   * Writes a record from outside any lock (another client, an operator); bumps the version.
   * `announce: false`: no watcher hears of it (a writer that does not announce, a lost message).
   */
  put(record: LeaderElectionRecord, options: { announce?: boolean } = {}): number {
    this.record = copyRecord(record);
    return this.bump(options.announce ?? true);
  }

  /**
   * The health-reporting watchers' channel goes down (`"disconnected"`, nothing announced to them) or
   * comes back (`"connected"`, then one wake: something may have been missed).
   */
  setWatchConnected(connected: boolean): void {
    if (this.connected === connected) return;
    this.connected = connected;
    for (const watcher of [...this.watchers]) {
      if (watcher.onHealth === undefined) continue;
      const w = watcher;
      queueMicrotask(() => {
        if (!this.watchers.has(w)) return;
        w.onHealth?.(connected ? "connected" : "disconnected");
        if (connected) w.onChange();
      });
    }
  }

  /** Deletes the record from outside any lock; bumps the version. */
  delete(): number {
    this.record = undefined;
    return this.bump();
  }

  /** Number of live `watch` subscriptions. */
  watcherCount(): number {
    return this.watchers.size;
  }

  /** @internal used by MemoryLock */
  subscribe(onChange: (seen?: WatchedRecord) => void, signal: AbortSignal, onHealth?: (health: WatchHealth) => void): void {
    if (signal.aborted) return;
    // A fresh entry, so the same callback can be subscribed twice and unsubscribed independently.
    const entry: Watcher = onHealth === undefined ? { onChange } : { onChange, onHealth };
    this.watchers.add(entry);
    signal.addEventListener("abort", () => this.watchers.delete(entry), { once: true });
    if (onHealth !== undefined && this.connected) {
      queueMicrotask(() => {
        if (this.watchers.has(entry) && this.connected) onHealth("connected");
      });
    }
  }

  private bump(announce = true): number {
    this.ver += 1;
    const stored = this.read();
    this.history.push({ version: this.ver, record: stored });
    if (!announce) return this.ver;
    for (const watcher of [...this.watchers]) {
      if (watcher.onHealth !== undefined && !this.connected) continue;
      // Notified after the writer's call completes, never re-entrantly inside it.
      queueMicrotask(() => {
        if (!this.watchers.has(watcher)) return;
        if (watcher.onHealth !== undefined && stored !== undefined) watcher.onChange({ record: copyRecord(stored), raw: memoryRaw(stored) });
        else watcher.onChange();
      });
    }
    return this.ver;
  }
}

interface FailureRule {
  op: MemoryLockOp;
  failure: MemoryLockFailure;
  remaining: number;
}

/**
 * One client of a `MemoryStore`. `update` compares against the version this instance last read,
 * created or wrote (client-go LeaseLock's cached resourceVersion): anyone else's write in between gives
 * `ConflictError`, a deleted record gives `NotFoundError`, and an update before any get/create fails.
 */
export class MemoryLock implements ResourceLock {
  /** Every call in order, with timing. */
  readonly log: MemoryLockCall[] = [];
  /** Events as `"Normal LeaderElection <identity> <message>"`. */
  readonly events: string[] = [];
  /** Called synchronously at the start of each call (before failures and latency): `n` counts that op from 1. */
  onCall?: (op: MemoryLockOp, n: number) => void;
  /** Called synchronously for each recorded event message. */
  onRecordEvent?: (message: string) => void;
  /** Present only when the lock was created with `{ watch: true }` or `{ watchHealth: true }`. */
  readonly watch?: (onChange: (seen?: WatchedRecord) => void, signal: AbortSignal, onHealth?: (health: WatchHealth) => void) => void;

  private seenVersion: number | undefined;
  private closed = false;
  private readonly rules: FailureRule[] = [];
  private readonly counts: Record<MemoryLockOp, number> = { get: 0, create: 0, update: 0 };
  private readonly hanging = new Set<() => void>();
  private readonly closeController = new AbortController();

  constructor(
    readonly store: MemoryStore,
    private readonly id: string,
    private readonly options: MemoryLockOptions = {},
  ) {
    const latency = options.latency ?? {};
    if (options.clock === undefined && Object.values(latency).some((ms) => ms !== undefined && ms > 0)) {
      throw new TypeError("MemoryLock: latency needs a clock; pass { clock } as well");
    }
    if (options.watchHealth === true) {
      this.watch = (onChange, signal, onHealth) => {
        if (this.closed) return;
        this.store.subscribe(onChange, AbortSignal.any([signal, this.closeController.signal]), onHealth ?? (() => {}));
      };
    } else if (options.watch === true) {
      this.watch = (onChange, signal) => {
        if (this.closed) return;
        this.store.subscribe(() => onChange(), AbortSignal.any([signal, this.closeController.signal]));
      };
    }
  }

  /** Just the operations, in order: `["get", "create", "update", …]`. */
  get calls(): MemoryLockOp[] {
    return this.log.map((c) => c.op);
  }

  /** Calls currently waiting in an injected hang. */
  get hangingCalls(): number {
    return this.hanging.size;
  }

  /** Makes the next `times` calls of `op` fail as described (default: every call until cleared). */
  fail(op: MemoryLockOp | "all", failure: MemoryLockFailure, times = Infinity): void {
    const ops: MemoryLockOp[] = op === "all" ? ["get", "create", "update"] : [op];
    for (const o of ops) this.rules.push({ op: o, failure, remaining: times });
  }

  /** Removes every injected failure; calls already hanging keep hanging until aborted. */
  clearFailures(): void {
    this.rules.length = 0;
  }

  async get(signal?: AbortSignal): Promise<{ record: LeaderElectionRecord; raw: string }> {
    return this.call("get", signal, () => {
      const version = this.store.version;
      const record = this.store.read();
      if (record === undefined) throw new NotFoundError(`lease ${this.store.name} not found`);
      this.seenVersion = version;
      return { record, raw: memoryRaw(record) };
    });
  }

  async create(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    return this.call("create", signal, () => {
      if (this.store.read() !== undefined) throw new AlreadyExistsError(`lease ${this.store.name} already exists`);
      this.seenVersion = this.store.put(record);
    });
  }

  async update(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    return this.call("update", signal, () => {
      if (this.seenVersion === undefined) {
        throw new LockError(`lease ${this.store.name} not initialized, call get or create first`);
      }
      if (this.store.read() === undefined) throw new NotFoundError(`lease ${this.store.name} not found`);
      if (this.store.version !== this.seenVersion) {
        throw new ConflictError(
          `lease ${this.store.name} was modified (version ${this.store.version}, expected ${this.seenVersion})`,
        );
      }
      this.seenVersion = this.store.put(record);
    });
  }

  recordEvent(message: string): void {
    this.events.push(`Normal LeaderElection ${this.id} ${message}`);
    this.onRecordEvent?.(message);
  }

  identity(): string {
    return this.id;
  }

  describe(): string {
    return this.store.name;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.closeController.abort(new LockError("memory lock closed"));
  }

  private async call<T>(op: MemoryLockOp, signal: AbortSignal | undefined, apply: () => T): Promise<T> {
    const entry: MemoryLockCall = { op, start: this.options.clock?.now() ?? 0 };
    this.log.push(entry);
    this.counts[op] += 1;
    const finish = (outcome: "ok" | "error"): void => {
      entry.end = this.options.clock?.now() ?? 0;
      entry.outcome = outcome;
    };
    try {
      this.onCall?.(op, this.counts[op]);
      if (this.closed) throw new LockError("memory lock is closed");
      signal?.throwIfAborted();
      const failure = this.takeFailure(op);
      if (failure === "hang") {
        await this.hang(signal);
      } else if (failure instanceof Error) {
        throw failure;
      }
      const latency = this.options.latency?.[op] ?? 0;
      if (latency > 0 && this.options.clock !== undefined) await sleep(this.options.clock, latency, signal);
      if (this.closed) throw new LockError("memory lock is closed");
      const result = apply();
      if (failure !== undefined && typeof failure === "object" && !(failure instanceof Error)) throw failure.error;
      finish("ok");
      return result;
    } catch (err) {
      finish("error");
      throw err;
    }
  }

  private takeFailure(op: MemoryLockOp): MemoryLockFailure | undefined {
    const rule = this.rules.find((r) => r.op === op && r.remaining > 0);
    if (rule === undefined) return undefined;
    rule.remaining -= 1;
    return rule.failure;
  }

  private hang(signal: AbortSignal | undefined): Promise<never> {
    return new Promise<never>((_resolve, reject) => {
      const signals = [this.closeController.signal, ...(signal ? [signal] : [])];
      const any = AbortSignal.any(signals);
      const onAbort = (): void => {
        this.hanging.delete(onAbort);
        reject(any.reason instanceof Error ? any.reason : new LockError("request aborted"));
      };
      this.hanging.add(onAbort);
      any.addEventListener("abort", onAbort, { once: true });
    });
  }
}
