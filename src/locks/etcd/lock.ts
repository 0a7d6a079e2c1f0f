import { ConsecutiveBreaker, ConstantBackoff, circuitBreaker, handleWhen, noop, retry } from "cockatiel";
import { Etcd3, GRPCUnavailableError, isRecoverableError, type IEvent, type IKeyValue, type IOptions, type ITxnResponse } from "etcd3";
import {
  AlreadyExistsError,
  ConflictError,
  CorruptRecordError,
  LockError,
  NotFoundError,
  type ResourceLock,
  type WatchHealth,
  type WatchedRecord,
} from "../../election/lock.js";
import { recordFromJSON, recordToJSON, type LeaderElectionRecord } from "../../election/record.js";
import { hostPort, type EtcdConnectionSettings } from "./config.js";
import { EtcdUnavailableError, classifyEtcdError, type CallContext } from "./errors.js";
import { PrefixWatch } from "./watch.js";

/**
 * The etcd lock (`--lock etcd://…`): client-go's LeaderElectionRecord as JSON under one key per lease.
 *
 * Key layout, with the default prefix `leader-run/` and lease `web`:
 *   leader-run/web/lease   the record JSON; attached to an etcd lease, so it disappears by itself
 *                          when its holder stops renewing (server-side expiry)
 *   leader-run/web/term    the fencing counter; never attached to a lease, so it outlives the record
 *
 * Every write is one transaction that compares the mod revisions of both keys with what this lock
 * last read or wrote (compare-and-swap), so a stale writer changes nothing. etcd applies it through
 * Raft: linearizable, and on a member without quorum it fails (times out) instead of diverging.
 *
 * Terms work as in the Redis lock: a missing record with a counter present reads as a released record
 * carrying the counter as its term (never NotFound); every acquisition stores
 * max(requested term, counter + 1) in both keys in the same transaction; renewals and releases keep it.
 * So the term never goes back for the lease, after the record expired or was deleted, across etcd
 * restarts (the counter is in etcd's data), and for a fresh process (it reads the counter).
 */

export interface EtcdLockSettings {
  connection: EtcdConnectionSettings;
  name: string;
  identity: string;
  prefix: string;
  leaseDurationMs: number;
  /** Bound on each gRPC call; below the renew deadline. */
  callTimeoutMs: number;
  /** `etcd://h1:2379,h2:2379`, for messages. */
  where: string;
}

export interface EtcdLeaseKeys {
  lease: string;
  term: string;
  /** Both keys start with it: what the watch covers. */
  base: string;
}

export function etcdLeaseKeys(prefix: string, name: string): EtcdLeaseKeys {
  const base = `${prefix}${name}/`;
  return { base, lease: `${base}lease`, term: `${base}term` };
}

/** What this lock last read or wrote: the compare-and-swap expectation of the next `update`. */
interface Snapshot {
  /** Mod revisions as etcd reports them (decimal strings); "0" for an absent key. */
  leaseRev: string;
  termRev: string;
  /** The counter key's value; null when absent. */
  counter: number | null;
  value: string | null;
  record: LeaderElectionRecord;
}

type WriteOp = "create" | "acquire" | "renew" | "release";

const TERM_TEXT = /^\d{1,15}$/;

export class EtcdLock implements ResourceLock {
  readonly keys: EtcdLeaseKeys;
  private readonly client: Etcd3;
  private readonly listeners = new Set<(seen?: WatchedRecord) => void>();
  private readonly healthListeners = new Map<(seen?: WatchedRecord) => void, (health: WatchHealth) => void>();
  private watcher: PrefixWatch | undefined;
  /** etcd confirmed the watch and the stream has not failed since: every write reaches us. */
  private watching = false;
  private snapshot: Snapshot | undefined;
  private written: LeaderElectionRecord | undefined;
  /** The etcd lease our last successful write attached the record to (ours to revoke once replaced). */
  private attachedLease: string | undefined;
  private closed = false;

  constructor(private readonly settings: EtcdLockSettings) {
    this.keys = etcdLeaseKeys(settings.prefix, settings.name);
    this.client = new Etcd3(clientOptions(settings));
  }

  identity(): string {
    return this.settings.identity;
  }

  describe(): string {
    return `${this.keys.lease} on ${this.settings.where}`;
  }

  recordEvent(): void {
    // etcd has no event log; leader-run's own log lines carry the same information.
  }

  /** The record as stored by our last successful create/update (the term is the stored one). */
  lastWrittenRecord(): LeaderElectionRecord | undefined {
    return this.written === undefined ? undefined : { ...this.written };
  }

  fencingToken(): number | undefined {
    return this.written?.leaderTransitions;
  }

  /**
   * The etcd lease TTL: whole seconds, at least the lease duration plus the longest a lease grant may
   * take. The TTL runs from when etcd granted it, which is before our write was sent; the write is
   * sent at most one call timeout later, so the record outlives the lease duration counted from the
   * send, after which the leader (which gives up renewDeadline after sending, its child dead by
   * renewDeadline + killGrace < leaseDuration) is certainly stopped. etcd only ever lengthens a TTL
   * (minimum TTL, extension on an etcd leader change).
   */
  ttlSeconds(record?: LeaderElectionRecord): number {
    const ld = Math.max(this.settings.leaseDurationMs, (record?.leaseDurationSeconds ?? 0) * 1000);
    return Math.ceil(ld / 1000) + Math.ceil(this.settings.callTimeoutMs / 1000);
  }

  async get(signal?: AbortSignal): Promise<{ record: LeaderElectionRecord; raw: string }> {
    const response = await this.call("read", this.keys.lease, signal, () =>
      this.client.kv.txn({ compare: [], success: this.readOps(), failure: [] }),
    );
    const snapshot = this.decode(response);
    if (snapshot === undefined) {
      this.snapshot = undefined;
      throw new NotFoundError(`lease ${this.describe()} does not exist`);
    }
    this.snapshot = snapshot;
    return { record: { ...snapshot.record }, raw: rawOf(snapshot) };
  }

  async create(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    await this.write("create", record, record.leaderTransitions, signal);
  }

  async update(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    const seen = this.snapshot;
    if (seen === undefined) {
      throw new ConflictError(`lease ${this.describe()}: update without a prior get or create (nothing to compare with)`);
    }
    const current = seen.record;
    let op: WriteOp;
    let term: number;
    if (record.holderIdentity === "") {
      op = "release";
      term = current.leaderTransitions;
    } else if (
      seen.value === null ||
      current.holderIdentity !== record.holderIdentity ||
      record.leaderTransitions > current.leaderTransitions
    ) {
      op = "acquire";
      term = Math.max(record.leaderTransitions, current.leaderTransitions + 1, (seen.counter ?? 0) + 1);
    } else {
      op = "renew";
      term = current.leaderTransitions;
    }
    await this.write(op, record, term, signal);
  }

  /**
   * Wakes `onChange` on every change of the two keys (a write, a release, a deletion, the record's
   * expiry by etcd's lease), and when the watch stream (re)connects, since a change may have been missed.
   * A write of the record alone (a renewal) comes with the record, as `get` would return it. `onHealth`
   * is `"connected"` from etcd's confirmation of the watch until the stream fails.
   */
  watch(onChange: (seen?: WatchedRecord) => void, signal: AbortSignal, onHealth?: (health: WatchHealth) => void): void {
    if (signal.aborted || this.closed) return;
    const listener = (seen?: WatchedRecord): void => onChange(seen);
    this.listeners.add(listener);
    if (onHealth !== undefined) {
      this.healthListeners.set(listener, onHealth);
      if (this.watching) queueMicrotask(() => this.healthListeners.get(listener)?.("connected"));
    }
    this.ensureWatcher();
    signal.addEventListener(
      "abort",
      () => {
        this.listeners.delete(listener);
        this.healthListeners.delete(listener);
      },
      { once: true },
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.healthListeners.clear();
    const watcher = this.watcher;
    this.watcher = undefined;
    watcher?.close();
    this.client.close();
  }

  /**
   * One read, so bad credentials or a missing permission fail here (permanently) rather than at the
   * first renewal. An unreachable cluster is not an error: the elector reports each failed attempt.
   */
  async connect(waitMs: number): Promise<void> {
    const signal = AbortSignal.timeout(Math.max(1, waitMs));
    try {
      await this.get(signal);
    } catch (error) {
      if (error instanceof NotFoundError || error instanceof EtcdUnavailableError || error instanceof CorruptRecordError) return;
      if (signal.aborted) return;
      throw error;
    }
  }

  private readOps(): { request_range: { key: Buffer } }[] {
    return [{ request_range: { key: Buffer.from(this.keys.lease) } }, { request_range: { key: Buffer.from(this.keys.term) } }];
  }

  private async write(op: WriteOp, record: LeaderElectionRecord, term: number, signal?: AbortSignal): Promise<void> {
    const stored: LeaderElectionRecord = { ...record, leaderTransitions: term };
    const value = JSON.stringify(recordToJSON(stored, 3));
    const granted = await this.call("write", this.keys.lease, signal, () =>
      this.client.leaseClient.leaseGrant({ TTL: this.ttlSeconds(record), ID: 0 }),
    );
    const leaseId = granted.ID;
    const seen = op === "create" ? undefined : this.snapshot;
    const compare =
      op === "create"
        ? [createRevisionIsZero(this.keys.lease), createRevisionIsZero(this.keys.term)]
        : [modRevisionIs(this.keys.lease, seen?.leaseRev ?? "0"), modRevisionIs(this.keys.term, seen?.termRev ?? "0")];
    const success: object[] = [{ request_put: { key: Buffer.from(this.keys.lease), value: Buffer.from(value), lease: leaseId } }];
    if (op === "create" || op === "acquire") {
      success.push({ request_put: { key: Buffer.from(this.keys.term), value: Buffer.from(String(term)) } });
    }
    // An unknown outcome (deadline, abort) leaves the new etcd lease alone: if the write did apply, the
    // record hangs on it and must live out its full TTL. It expires by itself either way.
    const response = await this.call("write", this.keys.lease, signal, () =>
      this.client.kv.txn({ compare, success, failure: this.readOps() }),
    );
    if (!response.succeeded) {
      this.revoke(leaseId);
      const now = this.tryDecode(response);
      const holder = now === undefined || now.record.holderIdentity === "" ? "" : ` (now held by "${now.record.holderIdentity}")`;
      if (op === "create") throw new AlreadyExistsError(`lease ${this.describe()} already exists${holder}`);
      throw new ConflictError(`lease ${this.describe()} changed since it was last read${holder}`);
    }
    const revision = response.header.revision;
    const previous = this.attachedLease;
    this.attachedLease = leaseId;
    // The record no longer hangs on our previous etcd lease: revoking it only spares etcd the wait.
    if (previous !== undefined && previous !== leaseId) this.revoke(previous);
    const counter = op === "create" || op === "acquire" ? term : (seen?.counter ?? null);
    this.snapshot = {
      leaseRev: revision,
      termRev: op === "create" || op === "acquire" ? revision : (seen?.termRev ?? "0"),
      counter,
      value,
      record: stored,
    };
    this.written = stored;
  }

  private revoke(id: string): void {
    if (this.closed) return;
    this.client.leaseClient.leaseRevoke({ ID: id }).catch(() => undefined);
  }

  /**
   * Runs one gRPC call bounded by the call timeout and `signal`: it rejects within a tick of either,
   * whatever the channel does (a SIGSTOPped etcd leaves the call hanging until its gRPC deadline).
   */
  private call<T>(verb: CallContext["verb"], key: string, signal: AbortSignal | undefined, run: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new LockError(`etcd lock ${this.describe()} is closed`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const ctx: CallContext = { verb, key, where: this.settings.where, username: this.settings.connection.auth?.username };
    const timeoutMs = this.settings.callTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (settle: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        settle();
      };
      const onAbort = (): void => finish(() => reject(signal?.reason));
      const timer = setTimeout(
        () => finish(() => reject(new EtcdUnavailableError(`etcd at ${ctx.where} did not answer (${verb} of key ${key}) within ${timeoutMs}ms`))),
        timeoutMs,
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      let pending: Promise<T>;
      try {
        pending = run();
      } catch (error) {
        pending = Promise.reject(error);
      }
      pending.then(
        (value) => finish(() => resolve(value)),
        (error: unknown) => finish(() => reject(classifyEtcdError(error, ctx))),
      );
    });
  }

  /** Turns the two range responses into a snapshot; undefined when neither key exists. */
  private decode(response: ITxnResponse): Snapshot | undefined {
    const [leaseKv, termKv] = [0, 1].map((i) => response.responses[i]?.response_range?.kvs?.[0]) as [IKeyValue | undefined, IKeyValue | undefined];
    let counter: number | null = null;
    if (termKv !== undefined) {
      const text = termKv.value.toString("utf8");
      if (!TERM_TEXT.test(text)) {
        throw new CorruptRecordError(
          `fencing counter ${this.keys.term} on ${this.settings.where} holds ${JSON.stringify(text.slice(0, 40))}, not a term number`,
        );
      }
      counter = Number(text);
    }
    const termRev = termKv?.mod_revision ?? "0";
    if (leaseKv === undefined) {
      if (counter === null) return undefined;
      const record: LeaderElectionRecord = {
        holderIdentity: "",
        leaseDurationSeconds: 0,
        acquireTime: null,
        renewTime: null,
        leaderTransitions: counter,
      };
      return { leaseRev: "0", termRev, counter, value: null, record };
    }
    const value = leaseKv.value.toString("utf8");
    let record: LeaderElectionRecord;
    try {
      record = recordFromJSON(JSON.parse(value));
    } catch (error) {
      throw new CorruptRecordError(
        `lease ${this.describe()} does not hold a leader-run record (${(error as Error).message}); if nothing else uses this key, delete it`,
        { cause: error },
      );
    }
    return { leaseRev: leaseKv.mod_revision, termRev, counter, value, record };
  }

  private tryDecode(response: ITxnResponse): Snapshot | undefined {
    try {
      return this.decode(response);
    } catch {
      return undefined;
    }
  }

  private ensureWatcher(): void {
    if (this.watcher !== undefined) return;
    this.watcher = new PrefixWatch(
      this.client.watchClient,
      this.keys.base,
      (events) => this.onEvents(events),
      (connected) => this.setWatching(connected),
    );
    this.watcher.start();
  }

  /**
   * One revision's events. A renewal writes the record key alone: its value and mod revision are what
   * `get` returns (see rawOf), so it is passed on as the record. Anything else (an acquisition also
   * writes the term key, a deletion or expiry, a reconnection) is a wake-up to read.
   */
  private onEvents(events: IEvent[]): void {
    const [only] = events;
    if (events.length === 1 && only !== undefined && isPut(only) && only.kv.key.toString("utf8") === this.keys.lease) {
      const value = only.kv.value.toString("utf8");
      let record: LeaderElectionRecord | undefined;
      try {
        record = recordFromJSON(JSON.parse(value));
      } catch {
        record = undefined;
      }
      if (record !== undefined && record.holderIdentity !== "") {
        this.notify({ record, raw: `${only.kv.mod_revision} ${value}` });
        return;
      }
    }
    this.notify();
  }

  private setWatching(watching: boolean): void {
    if (this.watching === watching) return;
    this.watching = watching;
    for (const onHealth of [...this.healthListeners.values()]) {
      try {
        onHealth(watching ? "connected" : "disconnected");
      } catch {
        // A listener's failure must not stop the others.
      }
    }
  }

  private notify(seen?: WatchedRecord): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(seen === undefined ? undefined : { record: { ...seen.record }, raw: seen.raw });
      } catch {
        // A listener's failure must not stop the others.
      }
    }
  }
}

/** The proto enum arrives as its name; its number is accepted too. */
function isPut(event: IEvent): boolean {
  return event.type === "Put" || (event.type as unknown) === 0;
}

/** What the elector compares: the record's revision makes every write visible, even an identical one. */
function rawOf(s: Snapshot): string {
  if (s.value !== null) return `${s.leaseRev} ${s.value}`;
  return `absent ${s.termRev} ${JSON.stringify(recordToJSON(s.record, 3))}`;
}

function createRevisionIsZero(key: string): object {
  return { key: Buffer.from(key), target: "Create", result: "Equal", create_revision: 0 };
}

function modRevisionIs(key: string, revision: string): object {
  return { key: Buffer.from(key), target: "Mod", result: "Equal", mod_revision: revision };
}

/**
 * etcd3's defaults retry and queue in ways that could outlast a renew deadline; here every unary call
 * carries a gRPC deadline (the lock races it with its own timer and the caller's signal anyway), a
 * member that keeps failing is skipped for a second (the circuit breaker: fail over to another
 * endpoint), and a call that failed with UNAVAILABLE (typically: it never reached the member) is
 * retried at once on another one. A deadline is never retried: a late write must not trail behind.
 */
function clientOptions(settings: EtcdLockSettings): IOptions {
  const { connection } = settings;
  const endpoints = connection.endpoints.map(hostPort);
  const options: IOptions = {
    hosts: endpoints,
    dialTimeout: settings.callTimeoutMs,
    defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + settings.callTimeoutMs }),
    faultHandling: {
      // With one endpoint there is nowhere else to go: a breaker would only turn a recovered etcd away.
      host: () =>
        endpoints.length > 1 ? circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(2) }) : noop,
      global: retry(handleWhen((error) => error instanceof GRPCUnavailableError), { maxAttempts: Math.max(0, endpoints.length - 1), backoff: new ConstantBackoff(0) }),
    },
    grpcOptions: {
      // Notice a dead connection (a killed or frozen member) without waiting for TCP timeouts.
      "grpc.keepalive_time_ms": 5000,
      "grpc.keepalive_timeout_ms": 2000,
      "grpc.keepalive_permit_without_calls": 0,
    },
  };
  if (connection.tls !== undefined) {
    options.credentials = { rootCertificate: connection.tls.ca };
    if (connection.tls.key !== undefined) options.credentials.privateKey = connection.tls.key;
    if (connection.tls.cert !== undefined) options.credentials.certChain = connection.tls.cert;
  }
  if (connection.auth !== undefined) {
    options.auth = {
      username: connection.auth.username,
      password: connection.auth.password,
      callOptions: () => ({ deadline: Date.now() + settings.callTimeoutMs }),
    };
  }
  return options;
}

