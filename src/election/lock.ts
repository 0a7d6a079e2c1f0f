import type { LeaderElectionRecord } from "./record.js";

/**
 * What the elector needs from a backend: client-go's `resourcelock.Interface`.
 *
 * `update` is a compare-and-swap against the version this lock object last read, created or wrote
 * (like LeaseLock's cached resourceVersion): if anyone else wrote in between it rejects with
 * `ConflictError` and writes nothing. Every call should honour `signal` (reject promptly and stop the
 * request) so that resources are freed; the elector never waits for a call whose signal aborted, so a
 * lock that ignores it cannot hold up a stop, only leak the request.
 */
export interface ResourceLock {
  /**
   * Reads the record; `raw` is the serialised form the elector compares to notice any change. The
   * record must come back as it was written, timestamps to the millisecond: the elector recognises its
   * own writes by comparing records, and treats a record naming its identity that it cannot recognise
   * as written by another process.
   */
  get(signal?: AbortSignal): Promise<{ record: LeaderElectionRecord; raw: string }>;
  /** Creates the record; `AlreadyExistsError` if it exists. */
  create(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void>;
  /** Replaces the record if nobody wrote since our last get/create/update; `ConflictError` otherwise. */
  update(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void>;
  /** `"became leader"` / `"stopped leading"`; backends without events ignore it. */
  recordEvent(message: string): void;
  identity(): string;
  /** Human-readable location of the lease, e.g. `default/my-lease` or `/run/user/1000/leader-run/x`. */
  describe(): string;
  /**
   * Optional fast hand-over: calls `onChange` (possibly spuriously) when the record may have changed,
   * until `signal` aborts. Correctness never depends on it; the elector keeps its retry loop.
   *
   * `onChange` may carry the record now stored (`seen`: exactly what `get` would return, same `raw`),
   * when the notification itself says what was written; the elector then observes it without a read.
   *
   * `onHealth` (optional, see `WatchHealth`): a lock that reports `"connected"` lets waiting candidates
   * read about once per lease duration instead of every retry period, so it must keep that promise; a
   * lock that never calls it is polled at the retry period, as before.
   */
  watch?(onChange: (seen?: WatchedRecord) => void, signal: AbortSignal, onHealth?: (health: WatchHealth) => void): void;
  /**
   * Optional: true when the lock itself refuses a record naming our identity that another process wrote
   * (the file lock: a live writer is refused with a `PermanentLockError`, a dead one whose work may
   * still run is waited out). The elector then leaves that decision to `update`; otherwise it treats
   * such a record as foreign until unchanged for its lease duration.
   */
  readonly guardsOwnIdentity?: boolean;
  /** Releases connections and handles; the lock is unusable afterwards. */
  close?(): Promise<void>;
}

/** A record delivered by a watch notification: what `get` would return at that moment. */
export interface WatchedRecord {
  record: LeaderElectionRecord;
  raw: string;
}

/**
 * The state of a watch's notification channel, reported through `watch`'s `onHealth`.
 *
 * `"connected"`: from now until `"disconnected"` is reported, every write of the record (renewals
 * too) is announced through `onChange` shortly after it is applied, with the record (`seen`) or without
 * (the elector reads), and a deletion or server-side expiry is announced when it happens. Report it
 * only once notifications are known to flow (the subscription or stream is confirmed), and report
 * `"disconnected"` as soon as they may be missed (connection lost, stream failed, falling back to
 * polling). Then the elector polls at the retry period again at once. Announcing a change that did not
 * happen is harmless; missing one only delays a take-over, and the elector notices when a read shows a
 * change nobody announced and polls again.
 */
export type WatchHealth = "connected" | "disconnected";

/** Base of every error a backend raises, so callers can tell lock failures from bugs. */
export class LockError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The record does not exist (client-go: `errors.IsNotFound`). */
export class NotFoundError extends LockError {}

/** Somebody else wrote since our last read (HTTP 409 / failed compare-and-swap). */
export class ConflictError extends LockError {}

/** `create` found a record already there. */
export class AlreadyExistsError extends LockError {}

/**
 * The backend refuses us for good (bad credentials, permission denied, an unusable lock location).
 * Retrying cannot help; the CLI exits 69.
 */
export class PermanentLockError extends LockError {}

/**
 * The stored record cannot be read (corrupt or truncated). Not permanent: the elector keeps retrying,
 * and nobody takes over a lease it cannot read, so a bad file never leads to two leaders.
 */
export class CorruptRecordError extends LockError {}
