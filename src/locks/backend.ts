import type { ResourceLock } from "../election/lock.js";
import type { LockKind, LockSpec } from "./url.js";

/**
 * What a lock backend is to the rest of leader-run: how to open it from a parsed `--lock` URL, and
 * what it can and cannot do. Callers (the CLI, `status`, `release`) decide from the declared
 * capabilities, never from a backend's concrete class; the conformance suite
 * (test/locks/conformance/) checks every declaration against the real server, both ways.
 * docs/backends.md has the table for every backend and how to add one.
 */
export interface LockCapabilities {
  /**
   * The store removes an abandoned record by itself (a TTL: Redis PEXPIRE, an etcd lease). When false,
   * an abandoned record stays until someone overwrites or deletes it; nobody is blocked by that, since
   * the elector's own expiry (renew time + lease duration) decides who may take over.
   */
  expiresByItself: boolean;
  /**
   * `ResourceLock.watch` exists and wakes waiters on a change (file watch, pub/sub, a watch stream)
   * well within one retry period. When false the lock has no `watch` and waiters poll.
   */
  notifies: boolean;
  /**
   * The backend can see the holder's processes (same host): it takes over from a provably dead holder
   * at once, and it offers a `ProcessGuard` so a standby also waits for the holder's child. Exactly the
   * backends that declare this return `processGuard` from `open`.
   */
  seesHolderProcesses: boolean;
  /**
   * The granularity of the lease duration followers read back, in milliseconds: every backend today
   * stores client-go's whole-second `leaseDurationSeconds` (1000); an etcd lease TTL is whole seconds too.
   */
  leaseDurationResolutionMs: number;
  /**
   * The granularity of `acquireTime`/`renewTime` as followers read them back, in milliseconds (a record
   * with millisecond times: 1; whole-second RFC 3339: 1000). Followers judge expiry from their own clock
   * when the record changes, not from these, so this bounds only what `status` shows.
   */
  timeResolutionMs: number;
  /**
   * The term (`leaderTransitions`) is kept outside the record, so a fresh process that never saw the
   * record still continues from the highest term after the record was deleted. When false, only a
   * candidate that saw the record before its deletion keeps the term monotonic (the elector's rule).
   */
  termSurvivesDelete: boolean;
  /**
   * `get` returns a different `raw` after every write, even one that changes nothing but the renew time
   * within the same second. The memory lock declares false: it keeps client-go's whole-second raw form
   * on purpose, so tests see the elector cope with it.
   */
  rawChangesOnEveryWrite: boolean;
  /**
   * `watch` reports its health (`WatchHealth`) and, while `"connected"`, announces every renewal with
   * the record exactly as `get` would return it, without a bare wake-up: waiting candidates then read
   * about once per lease duration instead of every retry period. When false the watch only wakes, and
   * waiters poll at the retry period.
   */
  announcesRenewals: boolean;
}

/** Options of `ProcessGuard.setGuardedProcessGroup`. */
export interface GuardOptions {
  /**
   * The orphan watchdog that kills the group if this process dies (src/child/watchdog.ts). Until it
   * exits, a standby on this host treats the lease as held even after this process and the group it
   * knows of are gone. Remembered until another pid is given; tell it before spawning the child.
   */
  watchdogPid?: number;
  /** Gives up waiting for the backend (resolves false). */
  signal?: AbortSignal;
  /**
   * Only remember them for the next write (resolves false at once): a standby naming the gate it
   * prepared, which its acquiring write then carries. Writing now would rewrite a record of ours that
   * may still be on disk from an earlier term and restart the other standbys' wait for it.
   */
  deferWrite?: boolean;
}

/**
 * Offered by backends that declare `seesHolderProcesses`: records the process group of the command
 * run under the lease (and its watchdog), so a standby on this host does not take over from a dead
 * holder while what it ran may still run.
 */
export interface ProcessGuard {
  /**
   * `pgid` undefined: the group is gone. Resolves true when the lease names them on return, false when
   * left to the next renewal. Never rejects.
   * @throws RangeError for an invalid pid, synchronously.
   */
  setGuardedProcessGroup(pgid: number | undefined, options?: GuardOptions): Promise<boolean>;
}

/** What `open` returns: the lock, and the process guard exactly when the backend declares one. */
export interface OpenedLock {
  lock: ResourceLock;
  processGuard?: ProcessGuard;
}

export interface OpenLockOptions {
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  /** Kubernetes only. */
  namespace?: string;
  kubeconfig?: string;
  /** Where backends read secret variables (e.g. LEADER_RUN_REDIS_PASSWORD); default process.env. */
  env?: Record<string, string | undefined>;
  /** Non-fatal backend problems (e.g. events forbidden), for the caller's log. */
  onWarning?: (message: string) => void;
  /** PEM files for TLS backends (etcds://); CLI --tls-ca, --tls-cert, --tls-key. */
  tlsCaFile?: string | undefined;
  tlsCertFile?: string | undefined;
  tlsKeyFile?: string | undefined;
  /** etcd only: file holding the password (CLI --etcd-password-file). */
  etcdPasswordFile?: string | undefined;
  /** PostgreSQL only: `[schema.]table`. */
  pgTable?: string | undefined;
  /** Backend facts worth one log line (e.g. which hand-over signal is in use). */
  onInfo?: (message: string) => void;
}

/** The spec of one kind of `--lock` URL. */
export type SpecOf<K extends LockKind> = Extract<LockSpec, { kind: K }>;

/**
 * One backend, as exported by its folder's index.ts (`fileBackend`, `redisBackend`, …).
 * `open` rejects with a `LockConfigError` (src/locks/errors.ts) for settings it refuses and with a
 * `PermanentLockError` when the store refuses us for good.
 */
export interface LockBackend<K extends LockKind = LockKind> {
  kind: K;
  capabilities: LockCapabilities;
  open(spec: SpecOf<K>, options: OpenLockOptions): Promise<OpenedLock>;
}

/**
 * A backend that offers no process guard, from a plain `open(spec, options) → ResourceLock` (the
 * shape etcd and PostgreSQL export): the registry line for such a backend stays one line.
 */
export function plainBackend<K extends LockKind>(
  kind: K,
  capabilities: LockCapabilities,
  open: (spec: SpecOf<K>, options: OpenLockOptions) => Promise<ResourceLock>,
): LockBackend<K> {
  if (capabilities.seesHolderProcesses) {
    throw new TypeError(`the ${kind} backend declares seesHolderProcesses but offers no process guard`);
  }
  return { kind, capabilities, open: async (spec, options) => ({ lock: await open(spec, options) }) };
}
