import {
  AlreadyExistsError,
  ConflictError,
  CorruptRecordError,
  LockError,
  NotFoundError,
  PermanentLockError,
  type ResourceLock,
  type WatchHealth,
  type WatchedRecord,
} from "../../election/lock.js";
import { recordFromJSON, recordToJSON, type LeaderElectionRecord } from "../../election/record.js";
import {
  RedisUnavailableError,
  classifyRedisError,
  createRedisClient,
  createSubscriber,
  loadTls,
  resolveSecret,
  type RedisClient,
  type RedisConnectionSettings,
} from "./connection.js";
import { READ_SCRIPT, WRITE_SCRIPT, encodeRecordAroundTerm, type LuaScript } from "./scripts.js";
import { RedisConfigError, describeTarget, parseRedisUrl, type RedisTarget } from "./url.js";

export { RedisUnavailableError } from "./connection.js";
export { RedisConfigError, isRedisUrl, parseRedisUrl, redactRedisUrl } from "./url.js";

/**
 * The Redis lock (`--lock redis://…`): client-go's LeaderElectionRecord as JSON under one key per lease.
 *
 * Key layout, with the default prefix `leader-run:` and lease `web`:
 *   leader-run:{web}:lease   the record JSON; expires `leaseDuration` after the last write (server clock)
 *   leader-run:{web}:token   the fencing counter; never expires
 *   leader-run:{web}:events  pub/sub channel: the new holder ("" on release) on every change of holder
 * The `{web}` hash tag puts both keys in one Cluster slot, so one script can touch both atomically.
 *
 * Terms and fencing tokens. The record's `leaderTransitions` is the term, handed to the child as its
 * fencing token. The lease key expires, so the counter key is the memory of the last term:
 *   - `get` of an expired lease (counter present, key absent) returns a released record (holder "")
 *     whose leaderTransitions is the counter, never NotFound; the elector then takes over with
 *     counter + 1. Only when both keys are absent (a new lease, or Redis lost its data) is it NotFound,
 *     and `create` stores the elector's term (0 for a new lease) as record and counter.
 *   - every acquisition (a new holder, or the same holder starting a new term) stores
 *     max(INCR counter, the requested term), and renewals and releases keep the stored term.
 * While Redis keeps its data the counter equals the stored term, so the term the elector computes
 * (previous + 1) is exactly the stored one, and both strictly increase from term to term; in any case
 * the stored term is never below the requested one. `lastWrittenRecord()` shows what was stored.
 */
export interface RedisLockOptions {
  /** Lease name; must not contain `{` or `}` (they would break the Cluster hash tag). */
  name: string;
  identity: string;
  /** The elector's leaseDuration: the lease key expires this long after the last write. */
  leaseDurationMs: number;
  /** The elector's renewDeadline: every command times out well before it. */
  renewDeadlineMs: number;
  /** Key prefix, default `leader-run:` (URL option `prefix=` otherwise). */
  keyPrefix?: string;
  username?: string;
  password?: string;
  passwordFile?: string;
  /** Name of an environment variable holding the password. */
  passwordEnv?: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
  sentinelPasswordFile?: string;
  sentinelPasswordEnv?: string;
  /** PEM files for rediss:// (URL options `ca=`, `cert=`, `key=`, `servername=` otherwise). */
  tls?: { caFile?: string; certFile?: string; keyFile?: string; servername?: string };
  /** Default: half the renew deadline. Must be below it. */
  commandTimeoutMs?: number;
  /** How long `openRedisLock` waits for the first answer before returning anyway. Default 2 s. */
  connectWaitMs?: number;
  /** Where `password_env` and `LEADER_RUN_REDIS_PASSWORD` are read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/** Read when no other password source is given. */
export const REDIS_PASSWORD_ENV = "LEADER_RUN_REDIS_PASSWORD";
export const REDIS_SENTINEL_PASSWORD_ENV = "LEADER_RUN_REDIS_SENTINEL_PASSWORD";
export const DEFAULT_KEY_PREFIX = "leader-run:";

export interface RedisLeaseKeys {
  lease: string;
  token: string;
  channel: string;
}

export function redisLeaseKeys(prefix: string, name: string): RedisLeaseKeys {
  const base = `${prefix}{${name}}`;
  return { lease: `${base}:lease`, token: `${base}:token`, channel: `${base}:events` };
}

/** What this lock last read or wrote: the compare-and-swap expectation of the next `update`. */
interface Snapshot {
  /** The lease key's value; null when the key was absent. */
  value: string | null;
  /** The fencing counter; null when absent. */
  counter: string | null;
  /** The record (synthetic "released" one when the key was absent but the counter present). */
  record: LeaderElectionRecord;
}

type WriteOp = "create" | "acquire" | "renew" | "release";

export class RedisLock implements ResourceLock {
  readonly keys: RedisLeaseKeys;
  private readonly client: RedisClient;
  private subscriber: RedisClient | undefined;
  private readonly listeners = new Set<(seen?: WatchedRecord) => void>();
  private readonly healthListeners = new Map<(seen?: WatchedRecord) => void, (health: WatchHealth) => void>();
  /** The subscription is confirmed on a connection that is up: every publish reaches us. */
  private subscribed = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private snapshot: Snapshot | undefined;
  private written: LeaderElectionRecord | undefined;
  private lastConnectionError: unknown;
  private lastNodeError: unknown;
  /** Set by a connection-level credentials/permission failure; cleared by the next success. */
  private fatal: PermanentLockError | undefined;
  private closed = false;

  constructor(
    private readonly settings: RedisConnectionSettings,
    private readonly options: { name: string; identity: string; leaseDurationMs: number; keyPrefix: string },
  ) {
    this.keys = redisLeaseKeys(options.keyPrefix, options.name);
    this.client = createRedisClient(settings);
    this.client.on("error", (error: unknown) => this.onConnectionError(error));
    // Cluster: a node's own error (e.g. ECONNREFUSED) says more than the cluster's summary of it.
    this.client.on("node error", (error: unknown) => {
      this.lastNodeError = error;
      this.onConnectionError(error);
    });
  }

  identity(): string {
    return this.options.identity;
  }

  describe(): string {
    return `${this.keys.lease} on ${describeTarget(this.settings.target)}`;
  }

  recordEvent(): void {
    // Redis has no event log; leader-run's own log lines carry the same information.
  }

  /** The record as Redis stored it by our last successful create/update (the term is Redis's). */
  lastWrittenRecord(): LeaderElectionRecord | undefined {
    return this.written === undefined ? undefined : { ...this.written };
  }

  /** The term stored by our last successful write: the fencing token of the current/last term. */
  fencingToken(): number | undefined {
    return this.written?.leaderTransitions;
  }

  async get(signal?: AbortSignal): Promise<{ record: LeaderElectionRecord; raw: string }> {
    const reply = await this.command("read", signal, READ_SCRIPT, []);
    if (!Array.isArray(reply) || reply.length !== 3) throw this.unexpected(reply);
    const [value, counter, pttl] = reply as unknown[];
    const snapshot = this.decode(value, counter);
    if (snapshot === undefined) {
      this.snapshot = undefined;
      throw new NotFoundError(`lease ${this.describe()} does not exist`);
    }
    this.snapshot = snapshot;
    if (typeof pttl === "number" && pttl > 0 && snapshot.record.holderIdentity !== "") this.scheduleWake(pttl);
    return { record: { ...snapshot.record }, raw: snapshot.value ?? JSON.stringify(recordToJSON(snapshot.record, 3)) };
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
      term = Math.max(record.leaderTransitions, current.leaderTransitions + 1);
    } else {
      op = "renew";
      term = current.leaderTransitions;
    }
    await this.write(op, record, term, signal);
  }

  /**
   * Wakes `onChange` when the holder changes or the lease is released (pub/sub on a second connection),
   * when that connection (re)connects (a message may have been missed), and when the lease key we last
   * read is due to expire by the server's clock. A renewal publishes the stored value, which is passed
   * on as the record (`get` would return the same bytes). `onHealth` is `"connected"` while the
   * subscription is confirmed on a live connection: every write publishes, so nothing is missed.
   */
  watch(onChange: (seen?: WatchedRecord) => void, signal: AbortSignal, onHealth?: (health: WatchHealth) => void): void {
    if (signal.aborted || this.closed) return;
    const listener = (seen?: WatchedRecord): void => onChange(seen);
    this.listeners.add(listener);
    if (onHealth !== undefined) {
      this.healthListeners.set(listener, onHealth);
      if (this.subscribed) queueMicrotask(() => this.healthListeners.get(listener)?.("connected"));
    }
    this.ensureSubscriber();
    signal.addEventListener(
      "abort",
      () => {
        this.listeners.delete(listener);
        this.healthListeners.delete(listener);
        if (this.listeners.size === 0) this.cancelWake();
      },
      { once: true },
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelWake();
    this.setSubscribed(false);
    this.listeners.clear();
    this.healthListeners.clear();
    this.subscriber?.disconnect();
    this.client.disconnect();
  }

  /**
   * Connects and makes one read, so bad credentials or a missing permission fail here (permanently)
   * instead of at the first renewal. An unreachable server is not an error: the elector keeps
   * campaigning and reports each failed attempt, while the client reconnects with backoff.
   */
  async connect(waitMs: number): Promise<void> {
    this.lastConnectionError = undefined;
    this.client.connect().catch(() => undefined);
    const deadline = Date.now() + waitMs;
    for (;;) {
      if (this.fatal) throw this.fatal;
      // Unreachable (refused, unknown host, timed out): not for us to wait; the elector reports it.
      if (this.lastConnectionError !== undefined && this.client.status !== "ready") return;
      if (this.client.status === "ready") {
        try {
          await this.command("read", undefined, READ_SCRIPT, []);
          return;
        } catch (error) {
          if (error instanceof PermanentLockError) throw error;
          if (this.fatal) throw this.fatal;
        }
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) return;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.client.off("ready", done);
          this.client.off("error", done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(remaining, 200));
        this.client.once("ready", done);
        this.client.once("error", done);
      });
    }
  }

  private async write(op: WriteOp, record: LeaderElectionRecord, term: number, signal?: AbortSignal): Promise<void> {
    const { head, tail } = encodeRecordAroundTerm(record);
    // The key outlives the lease it stores by nothing: see expiryMs.
    const expiry = this.expiryMs(record);
    const args = [
      op,
      this.snapshot?.value ?? "",
      this.snapshot?.counter ?? "",
      head,
      tail,
      String(expiry),
      this.keys.channel,
      record.holderIdentity,
      String(term),
    ];
    const reply = await this.command(op, signal, WRITE_SCRIPT, args);
    if (!Array.isArray(reply) || reply.length !== 3) throw this.unexpected(reply);
    const [ok, value, counter] = reply as unknown[];
    if (ok !== 1) {
      const now = this.tryDecode(value, counter);
      const holder = now === undefined ? "" : ` (now held by "${now.record.holderIdentity}")`;
      if (op === "create") throw new AlreadyExistsError(`lease ${this.describe()} already exists${holder}`);
      throw new ConflictError(`lease ${this.describe()} changed since it was last read${holder}`);
    }
    const stored = this.decode(value, counter);
    if (stored === undefined) throw this.unexpected(reply);
    this.snapshot = stored;
    this.written = stored.record;
  }

  /**
   * Why a server-side expiry cannot shorten a live leader's lease: every successful write sets the
   * expiry to leaseDuration from when Redis applied it, which is after the leader sent it. The leader
   * gives up leadership renewDeadline after sending its last successful write and its child is gone
   * by renewDeadline + killGrace < leaseDuration (the CLI enforces this), so by the server's clock the
   * key can only expire after the leader has already stopped, just as a follower may only take over
   * leaseDuration after it last saw the record change. (This assumes the two clocks run at the same
   * rate within that margin, as client-go's own rule does.) The record's whole seconds are never longer
   * than leaseDurationMs, but the larger of the two is used in case a caller passes inconsistent values.
   */
  private expiryMs(record: LeaderElectionRecord): number {
    return Math.max(this.options.leaseDurationMs, record.leaseDurationSeconds * 1000);
  }

  /** Runs a script (EVALSHA, EVAL after a NOSCRIPT) bounded by the command timeout and `signal`. */
  private async command(what: string, signal: AbortSignal | undefined, script: LuaScript, args: string[]): Promise<unknown> {
    if (this.closed) throw new LockError(`Redis lock ${this.describe()} is closed`);
    signal?.throwIfAborted();
    if (this.fatal) throw this.fatal;
    if (this.client.status !== "ready") {
      if (this.client.status === "end") this.client.connect().catch(() => undefined);
      const cause = this.lastNodeError ?? this.lastConnectionError;
      if (cause !== undefined) throw classifyRedisError(cause, this.settings);
      throw new RedisUnavailableError(`Redis at ${describeTarget(this.settings.target)} is not connected (reconnecting)`);
    }
    const keys = [this.keys.lease, this.keys.token];
    const run = async (): Promise<unknown> => {
      try {
        return await this.client.evalsha(script.sha1, keys.length, ...keys, ...args);
      } catch (error) {
        if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
        return await this.client.eval(script.source, keys.length, ...keys, ...args);
      }
    };
    const timeoutMs = this.settings.commandTimeoutMs;
    const where = describeTarget(this.settings.target);
    const result = await new Promise<unknown>((resolve, reject) => {
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
        () => finish(() => reject(new RedisUnavailableError(`Redis at ${where} did not answer (${what}) within ${timeoutMs}ms`))),
        timeoutMs,
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      run().then(
        (value) => finish(() => resolve(value)),
        (error: unknown) => finish(() => reject(classifyRedisError(error, this.settings))),
      );
    });
    this.fatal = undefined;
    this.lastConnectionError = undefined;
    this.lastNodeError = undefined;
    return result;
  }

  private onConnectionError(error: unknown): void {
    this.lastConnectionError = error;
    const classified = classifyRedisError(error, this.settings);
    if (classified instanceof PermanentLockError) this.fatal = classified;
  }

  /** Turns a script reply into a snapshot; undefined when neither key exists. */
  private decode(value: unknown, counter: unknown): Snapshot | undefined {
    if ((value !== null && typeof value !== "string") || (counter !== null && typeof counter !== "string")) {
      throw this.unexpected([value, counter]);
    }
    if (counter !== null && !/^\d{1,15}$/.test(counter)) {
      throw new CorruptRecordError(
        `fencing counter ${this.keys.token} on ${describeTarget(this.settings.target)} holds ${JSON.stringify(counter.slice(0, 40))}, not a term number`,
      );
    }
    if (value === null) {
      if (counter === null) return undefined;
      const record: LeaderElectionRecord = {
        holderIdentity: "",
        leaseDurationSeconds: 0,
        acquireTime: null,
        renewTime: null,
        leaderTransitions: Number(counter),
      };
      return { value: null, counter, record };
    }
    let record: LeaderElectionRecord;
    try {
      record = recordFromJSON(JSON.parse(value));
    } catch (error) {
      throw new CorruptRecordError(
        `lease ${this.describe()} does not hold a leader-run record (${(error as Error).message}); if nothing else uses this key, delete it`,
        { cause: error },
      );
    }
    return { value, counter, record };
  }

  private tryDecode(value: unknown, counter: unknown): Snapshot | undefined {
    try {
      return this.decode(value, counter);
    } catch {
      return undefined;
    }
  }

  private unexpected(reply: unknown): LockError {
    return new LockError(`unexpected reply from Redis at ${describeTarget(this.settings.target)}: ${JSON.stringify(reply)?.slice(0, 200)}`);
  }

  private ensureSubscriber(): void {
    if (this.subscriber !== undefined) return;
    const sub = createSubscriber(this.client);
    this.subscriber = sub;
    sub.on("error", () => undefined);
    sub.on("node error", () => undefined);
    sub.on("message", (channel: string, message: string) => {
      if (channel === this.keys.channel) this.onMessage(message);
    });
    // Messages may be missed from the moment the connection drops until it is subscribed again.
    for (const event of ["close", "end", "reconnecting"]) {
      sub.on(event, () => {
        if (this.subscriber === sub) this.setSubscribed(false);
      });
    }
    // A release published before the subscription took effect reached no one: look once more when it
    // has, on the first connect and on every reconnect (ioredis reports ready before re-subscribing).
    const subscribe = (): void => {
      sub.subscribe(this.keys.channel).then(
        () => {
          if (!this.closed && this.subscriber === sub && sub.status === "ready") this.setSubscribed(true);
          this.notify();
        },
        () => {
          if (this.subscriber === sub) this.setSubscribed(false);
          // Not subscribed on a connection that is up (it timed out: the server stopped answering).
          // Start the connection over; its "ready" subscribes again, so notifications come back.
          if (!this.closed && this.subscriber === sub && sub.status === "ready") sub.disconnect(true);
        },
      );
    };
    sub.on("ready", () => {
      this.notify();
      subscribe();
    });
    subscribe();
  }

  /**
   * A renewal's message is the stored value: observed as is, and the expiry wake-up of the value we
   * last read is no longer due (the key was just renewed). Any other message (an acquisition or a
   * release names the new holder; an older leader-run publishes nothing on renewals) is a wake-up.
   */
  private onMessage(message: string): void {
    const seen = message.startsWith("{") ? this.tryDecode(message, null) : undefined;
    if (seen === undefined || seen.value === null || seen.record.holderIdentity === "") {
      this.notify();
      return;
    }
    this.cancelWake();
    this.notify({ record: seen.record, raw: seen.value });
  }

  private setSubscribed(subscribed: boolean): void {
    if (this.subscribed === subscribed) return;
    this.subscribed = subscribed;
    for (const onHealth of [...this.healthListeners.values()]) {
      try {
        onHealth(subscribed ? "connected" : "disconnected");
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

  /** A wake-up when the key we read expires: a dead leader's lease ends by the server's clock. */
  private scheduleWake(pttl: number): void {
    if (this.listeners.size === 0) return;
    this.cancelWake();
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.notify();
    }, pttl + 5);
    this.wakeTimer.unref();
  }

  private cancelWake(): void {
    if (this.wakeTimer !== undefined) clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
  }
}

const BRACES = /[{}]/;

/**
 * Opens the Redis lock named by `spec` (see url.ts for the URL forms). Throws `RedisConfigError`
 * for a bad URL or settings (exit 64) and `PermanentLockError` for rejected credentials or permissions
 * (exit 69). An unreachable server does not throw: the lock reconnects with backoff and each operation
 * fails with `RedisUnavailableError` until it is back.
 */
export async function openRedisLock(spec: string, options: RedisLockOptions): Promise<RedisLock> {
  const target: RedisTarget = parseRedisUrl(spec);
  const env = options.env ?? process.env;
  const keyPrefix = options.keyPrefix ?? target.options.prefix ?? DEFAULT_KEY_PREFIX;
  if (options.name === "" || BRACES.test(options.name)) {
    throw new RedisConfigError(`invalid lease name ${JSON.stringify(options.name)} for Redis: it must be non-empty without { or }`);
  }
  if (BRACES.test(keyPrefix)) {
    throw new RedisConfigError(`invalid Redis key prefix ${JSON.stringify(keyPrefix)}: it must not contain { or }`);
  }
  if (options.identity === "") throw new RedisConfigError("the Redis lock needs a non-empty identity");
  const rd = options.renewDeadlineMs;
  if (!(options.leaseDurationMs > 0) || !(rd > 0)) {
    throw new RedisConfigError("the Redis lock needs a positive leaseDurationMs and renewDeadlineMs");
  }
  const commandTimeoutMs = options.commandTimeoutMs ?? Math.max(1, Math.floor(rd / 2));
  if (!(commandTimeoutMs > 0) || commandTimeoutMs >= rd) {
    throw new RedisConfigError(`the Redis command timeout (${commandTimeoutMs}ms) must be positive and below the renew deadline (${rd}ms)`);
  }

  const settings: RedisConnectionSettings = { target, commandTimeoutMs };
  const username = options.username ?? target.username;
  if (username !== undefined) settings.username = username;
  const password = resolveSecret(
    {
      value: options.password,
      file: options.passwordFile,
      env: options.passwordEnv,
      urlFile: target.options.passwordFile,
      urlEnv: target.options.passwordEnv,
      urlValue: target.password,
      defaultEnv: REDIS_PASSWORD_ENV,
    },
    env,
    "Redis password",
  );
  if (password !== undefined) settings.password = password;
  if (target.mode === "sentinel") {
    const sentinelUsername = options.sentinelUsername ?? target.options.sentinelUsername;
    if (sentinelUsername !== undefined) settings.sentinelUsername = sentinelUsername;
    const sentinelPassword = resolveSecret(
      {
        value: options.sentinelPassword,
        file: options.sentinelPasswordFile,
        env: options.sentinelPasswordEnv,
        urlFile: target.options.sentinelPasswordFile,
        urlEnv: target.options.sentinelPasswordEnv,
        defaultEnv: REDIS_SENTINEL_PASSWORD_ENV,
      },
      env,
      "Redis Sentinel password",
    );
    if (sentinelPassword !== undefined) settings.sentinelPassword = sentinelPassword;
  }
  if (target.tls) {
    const files = { ...pickDefined(target.options, ["caFile", "certFile", "keyFile", "servername"]), ...options.tls };
    settings.tls = loadTls(files);
  } else if (options.tls !== undefined) {
    throw new RedisConfigError("TLS options need a rediss:// URL");
  }

  const lock = new RedisLock(settings, {
    name: options.name,
    identity: options.identity,
    leaseDurationMs: options.leaseDurationMs,
    keyPrefix,
  });
  try {
    await lock.connect(options.connectWaitMs ?? 2000);
  } catch (error) {
    await lock.close();
    throw error;
  }
  return lock;
}

function pickDefined<T extends object, K extends keyof T>(source: T, keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (source[k] !== undefined) out[k] = source[k];
  return out;
}
