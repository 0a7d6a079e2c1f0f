import { constants, watch as fsWatch, type FSWatcher, type Stats } from "node:fs";
import { link, lstat, mkdir, open, readdir, rename, unlink } from "node:fs/promises";
import { userInfo } from "node:os";
import { dirname, join, resolve } from "node:path";
import { systemClock, type Clock } from "../../election/clock.js";
import {
  AlreadyExistsError,
  ConflictError,
  CorruptRecordError,
  LockError,
  NotFoundError,
  PermanentLockError,
  type ResourceLock,
} from "../../election/lock.js";
import { emptyRecord, type LeaderElectionRecord } from "../../election/record.js";
import { decodeLeaseFile, encodeLeaseFile, salvageTransitions, type HolderInfo, type LeaseFile } from "./format.js";
import { BoundedFs, isFileSystemTimeout, seconds } from "./bounded.js";
import { FileMutex, type MutexHandle } from "./mutex.js";
import { mountTypes, needsProbe, probePaths, ProbeTimeoutError } from "./probe.js";
import { closeWriter, isOurs, openWriter, writerState } from "./liveness.js";
import { currentProcess, errno, processStartTime, sameHost, type ProcessIdentity } from "./process.js";
import type { GuardOptions, ProcessGuard } from "../backend.js";
import { LockConfigError } from "../errors.js";
import { randomHex } from "../../builtin.js";

/**
 * The embedded default backend: one lease per file in a private directory, for processes on one host
 * (or sharing a local filesystem).
 *
 * - Compare-and-swap: every write happens inside a short cross-process critical section (mutex.ts),
 *   re-reads the file, compares it byte for byte with what this object last read or wrote, and commits
 *   by writing a temp file, fsync, rename() (link() for create) and fsync of the directory. Readers never
 *   lock: they see the old file or the new one, never a torn one.
 * - Dead-holder fast takeover: the file names the holder process (and its child's process group and
 *   orphan watchdog). When all of them are provably gone on this host (liveness.ts), `get` reports the
 *   lease as released, so a standby takes over at its next attempt instead of after the lease
 *   duration. The CAS still compares the real bytes.
 * - One identity, one writer: a record naming our identity written by another live process on this
 *   host, or by another FileLock object of this process, is refused (`IdentityClashError`); one written by a previous process of ours that is gone but
 *   whose child may still run blocks us like any other holder (`SameIdentityHeldError`), instead of
 *   client-go's immediate re-acquisition.
 * - A corrupt file is an error, never a free lease, until the same bytes have sat unchanged for a whole
 *   lease duration: by then any leader that could have written them has stopped.
 */
export interface FileLockOptions {
  /** Lease name: the file name inside `dir`. */
  name: string;
  identity: string;
  /** Default: `defaultLockDir()`. Created with mode 0700 when missing. */
  dir?: string;
  /** Must match the elector's lease duration; bounds how long a corrupt file blocks. Default 15000. */
  leaseDurationMs?: number;
  clock?: Clock;
  /**
   * How long a crashed or hung writer may block the critical section (a dead writer on this host is
   * noticed at once). Raised to half of it plus `fsTimeoutMs` when that is longer: the section is never
   * broken while its holder's rename may still land. Default 5000.
   */
  criticalSectionStaleMs?: number;
  /**
   * How long one file-system call may take before it is abandoned and the operation fails (a hung NFS
   * or FUSE mount); see bounded.ts. The CLI passes the renew deadline: a call that slow has cost a
   * leader its lease anyway. Default 10000.
   */
  fsTimeoutMs?: number;
}

/** Another live process on this host campaigns with our identity: a configuration error (exit 69). */
export class IdentityClashError extends PermanentLockError {}

/**
 * The lease names our identity, but an earlier process wrote it and what it ran may still be running.
 * Like a lease held by someone else: it ends when that is gone or the lease expires.
 */
export class SameIdentityHeldError extends ConflictError {}

/** Bad options (an invalid lease name): a usage error, not a lock failure. */
export class FileLockConfigError extends LockConfigError {
  constructor(message: string) {
    super(message);
    this.name = "FileLockConfigError";
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const MAX_NAME = 200; // leaves room in NAME_MAX (255) for the helper files' suffixes
const MAX_FILE_BYTES = 1 << 20;
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const CREATE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;
/** How often a watching standby looks whether the holder process on this host still exists (kill 0). */
const HOLDER_LOOK_MS = 100;
/**
 * Slack for a write's landing time against its `landBy`: coarse file timestamps and the few
 * milliseconds between the last check and the rename. A write that landed over a breaker's record
 * landed at least COMMIT_MARGIN_MS (mutex.ts, 500 ms) after `landBy`.
 */
const LATE_MARGIN_MS = 250;
/** How a release that landed late is shown: held by nobody we know, so waited out like any holder. */
export const LATE_RELEASE_HOLDER = "(unknown: a release that landed late)";

/** Throws `FileLockConfigError` unless `name` is a plain file name that cannot leave the directory. */
export function validateLeaseName(name: string): void {
  if (name.length === 0 || name.length > MAX_NAME || !NAME.test(name) || name.includes("..")) {
    throw new FileLockConfigError(
      `invalid lease name ${JSON.stringify(name)}: use 1-${MAX_NAME} letters, digits, '.', '_' or '-', ` +
        `starting with a letter or digit, without '/' or '..'`,
    );
  }
}

/**
 * `/tmp/leader-run-<uid>`: a function of the user alone. Never of `XDG_RUNTIME_DIR` or `TMPDIR`: cron
 * sets neither while a login shell sets both, and the same job started from each must meet on the same
 * lease, or both would run. A directory someone else created there is refused (owner and mode checks),
 * never used. systemd units with `PrivateTmp=yes` see a /tmp of their own: give them (and the jobs they
 * must exclude) an explicit `--lock file:<dir>`.
 */
export function defaultLockDir(): string {
  const uid = process.getuid?.();
  return join(DEFAULT_LOCK_PARENT, `leader-run-${uid ?? userInfo().username}`);
}

/** Fixed, not `os.tmpdir()`: that reads TMPDIR. */
const DEFAULT_LOCK_PARENT = "/tmp";

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8)}`;
}

/** Rejects with the signal's reason as soon as it aborts, whatever `work` is doing. */
function withAbort<T>(signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
  if (!signal) return work();
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolvePromise, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work()
      .then(resolvePromise, reject)
      .finally(() => signal.removeEventListener("abort", onAbort));
  });
}

export class FileLock implements ResourceLock, ProcessGuard {
  /** `update` refuses our identity written by another live process (exit 69) and waits out a dead one's. */
  readonly guardsOwnIdentity = true;
  readonly dir: string;
  readonly name: string;
  readonly path: string;
  private readonly id: string;
  private readonly leaseDurationMs: number;
  private readonly clock: Clock;
  private readonly mutex: FileMutex;
  /** What the file held when this object last read, created or wrote it; null: known to be absent. */
  private expected: string | null | undefined;
  /** Bumped by every write of ours: a read that overlapped one may predate it and must not become the CAS base. */
  private generation = 0;
  private corrupt: { content: string; since: number } | undefined;
  /** When this object first saw the current bytes: how long a record of an earlier process of ours has sat unchanged. */
  private seen: { content: string; since: number } | undefined;
  private guardedPgid: number | undefined;
  /** Settles when this object's last queued critical section has ended (see `critical`). Never rejects. */
  private criticalTail: Promise<void> = Promise.resolve();
  private watchdog: { pid: number; startTime: Promise<number | null> } | undefined;
  private readonly watchers = new Set<() => void>();
  /**
   * The holder of the record last read, when it is another process on this host: its death changes
   * nothing in the file, so `watch` looks for it (see there).
   */
  private localHolder: HolderInfo | undefined;
  /** The bytes of the last read and when they landed (the file's ctime, the file system's clock). */
  private lastRead: { content: string; ctimeMs: number; ino: number } | undefined;
  /**
   * Our last write that we saw land in time (lstat right after it): its file's ctime may move later
   * (a chmod, a touch, an xattr, a link count change), which does not make it late for us.
   */
  private landedInTime: { content: string; ino: number } | undefined;
  private readonly fs: BoundedFs;
  /** An operation completed here once: from then on a hung call is an outage, not a wrong location. */
  private established = false;
  /** The first contact with the location (mount check, probe); see `contact`. */
  private ready: Promise<void> | undefined;
  private probe: { cancel(): void } | undefined;
  /** Whether the location is on a file system that can hang (see probe.ts); read once. */
  private mayHang: boolean | undefined;
  private closed = false;
  /** Names this object in the file: another FileLock of this process is another writer. */
  private readonly writer = randomHex(8);

  constructor(options: FileLockOptions) {
    validateLeaseName(options.name);
    if (!options.identity) throw new FileLockConfigError("identity must not be empty");
    const ld = options.leaseDurationMs ?? 15_000;
    if (!(ld > 0)) throw new FileLockConfigError(`leaseDurationMs must be positive, got ${ld}`);
    this.name = options.name;
    this.id = options.identity;
    this.dir = resolve(options.dir ?? defaultLockDir());
    this.path = join(this.dir, this.name);
    this.leaseDurationMs = ld;
    this.clock = options.clock ?? systemClock;
    const fsTimeoutMs = options.fsTimeoutMs ?? 10_000;
    if (!(fsTimeoutMs > 0)) throw new FileLockConfigError(`fsTimeoutMs must be positive, got ${fsTimeoutMs}`);
    this.fs = new BoundedFs(this.dir, fsTimeoutMs, () => !this.established);
    // Helper files start with '.' and use '~', which lease names cannot contain: no name can clash.
    this.mutex = new FileMutex(this.helperPath("lock"), {
      staleMs: options.criticalSectionStaleMs ?? 5000,
      // The commit's rename runs under the same bound as every call: the lock must outlive it.
      commitBoundMs: fsTimeoutMs,
      run: (what, path, work) => this.fs.run(what, path, work),
    });
    openWriter(this.writer);
  }

  identity(): string {
    return this.id;
  }

  describe(): string {
    return this.path;
  }

  recordEvent(_message: string): void {
    // A file has nowhere to keep events.
  }

  /**
   * The process group of the command run under this lease (and the watchdog guarding it), or undefined
   * once the group is gone. Every record this object writes as holder names them, and a standby on this
   * host waits until they are gone too before it takes over from a dead holder.
   *
   * A group (or a new watchdog) is written at once: the file is rewritten with our current record plus
   * the new `leaderRun` fields, by compare-and-swap against what this object last read or wrote, and
   * only while that names this process as holder; otherwise nothing is written and the next renewal
   * carries it. A renewal running at the same moment is serialised with it and neither loses the group
   * nor conflicts. The rewrite keeps every record field, so it neither renews nor extends the lease.
   *
   * Forgetting (undefined) is lazy, left to the next write: until then the file names a group that is
   * gone, which delays nobody (kill() finds no such group); were its id reused meanwhile, a standby would
   * merely wait for our next renewal or the lease's expiry. Writing a released record forgets the group.
   *
   * @returns true when the lease file names them on return, false when left to the next renewal or
   *   when writing failed (the next renewal retries). Never rejects.
   * @throws RangeError for an invalid pid, synchronously.
   */
  setGuardedProcessGroup(pgid: number | undefined, options: GuardOptions = {}): Promise<boolean> {
    if (pgid !== undefined && (!Number.isSafeInteger(pgid) || pgid <= 1)) {
      throw new RangeError(`process group id must be an integer > 1, got ${pgid}`);
    }
    const watchdogPid = options.watchdogPid;
    if (watchdogPid !== undefined && (!Number.isSafeInteger(watchdogPid) || watchdogPid <= 1)) {
      throw new RangeError(`watchdog pid must be an integer > 1, got ${watchdogPid}`);
    }
    this.guardedPgid = pgid;
    let changed = pgid !== undefined;
    if (watchdogPid !== undefined && watchdogPid !== this.watchdog?.pid) {
      this.watchdog = { pid: watchdogPid, startTime: processStartTime(watchdogPid) };
      changed = true;
    }
    if (!changed || options.deferWrite === true) return Promise.resolve(false);
    return this.operation(options.signal, () => this.persistGuard(options.signal)).catch(() => false);
  }

  get(signal?: AbortSignal): Promise<{ record: LeaderElectionRecord; raw: string }> {
    return this.operation(signal, async () => {
      // Reading never creates anything: a mistyped `status --lock file:…` must not leave a directory.
      if (!(await this.ensureDir(false))) throw new NotFoundError(`lock directory ${this.dir} does not exist`);
      const generation = this.generation;
      const content = await this.readLease();
      // A write of ours (setGuardedProcessGroup) that landed meanwhile stays the CAS base: these bytes
      // may predate it, and it differs from them only in what this object itself added.
      const asBase = generation === this.generation;
      this.firstSeen(content);
      if (content === null) {
        if (asBase) this.expected = null;
        this.corrupt = undefined;
        throw new NotFoundError(`lease file ${this.path} does not exist`);
      }
      let parsed: LeaseFile;
      try {
        parsed = decodeLeaseFile(content);
      } catch (err) {
        return { record: this.corruptRecord(content, err as Error, asBase), raw: content };
      }
      this.corrupt = undefined;
      if (asBase) this.expected = content;
      if (this.landedLate(content, parsed)) {
        // It may have replaced a newer leader's record, whose work nothing here names any more: it is
        // held, by whoever wrote it or by nobody we know, until unchanged for a lease duration; never
        // free at once, never taken over from a dead writer.
        this.localHolder = undefined;
        const record = parsed.record;
        return {
          record: {
            ...record,
            holderIdentity: record.holderIdentity === "" ? LATE_RELEASE_HOLDER : record.holderIdentity,
            leaseDurationSeconds: Math.max(record.leaseDurationSeconds, Math.ceil(this.leaseDurationMs / 1000)),
          },
          raw: content,
        };
      }
      const gone = await this.holderIsGone(parsed);
      this.localHolder = gone || parsed.record.holderIdentity === "" ? undefined : await this.otherLocalProcess(parsed.holder);
      const record = gone ? { ...parsed.record, holderIdentity: "" } : parsed.record;
      return { record, raw: content };
    });
  }

  create(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    return this.operation(signal, async () => {
      await this.ensureDir();
      await this.critical(signal, async (mutex) => {
        try {
          await this.fs.run(`lstat ${this.path}`, this.path, () => lstat(this.path));
          throw new AlreadyExistsError(`lease file ${this.path} already exists`);
        } catch (err) {
          if (errno(err) !== "ENOENT") throw err;
        }
        const content = await this.encode(record, mutex.landBy);
        await this.commit(content, mutex, signal, "link");
        this.wrote(record, content);
      });
    });
  }

  /**
   * Compare-and-swap against what this object last read or wrote. Everything from the comparison to the
   * bookkeeping happens inside the critical section, so a concurrent `setGuardedProcessGroup` is either
   * fully before (and is the base we compare with) or fully after (and amends what we wrote).
   */
  update(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    return this.operation(signal, async () => {
      await this.ensureDir();
      await this.critical(signal, async (mutex) => {
        const expected = this.expected;
        const current = await this.readLease();
        if (current === null) throw new NotFoundError(`lease file ${this.path} does not exist`);
        if (expected === undefined || expected === null) {
          throw new ConflictError(`lease file ${this.path}: update without a previous read`);
        }
        if (current !== expected) throw new ConflictError(`lease file ${this.path} changed since this process last read it`);
        if (record.holderIdentity === this.id) await this.checkOwnIdentity(current);
        // A release or a request written over a record that landed late must not launder it: in time,
        // a release would be free at once (and a dead writer's record taken over at once) while the
        // leader it may have replaced still runs. It keeps the late record's landBy, so it reads late
        // too and is waited out for a lease duration like the record it replaces.
        const lateLandBy = record.holderIdentity !== this.id ? this.lateLandBy(current) : undefined;
        const content = await this.encodeUpdate(record, current, lateLandBy ?? mutex.landBy);
        await this.commit(content, mutex, signal, "rename", lateLandBy === undefined);
        this.wrote(record, content);
      });
    });
  }

  /**
   * Notifies on every change of the lease file (inotify on the directory), and when a holder process on
   * this host is gone with its guard and group: a crashed holder changes nothing in the file, and the
   * standby would otherwise notice only at its next attempt. While the holder process exists that look
   * is one kill(pid, 0) per HOLDER_LOOK_MS; once it is gone, the same liveness check `get` uses (the
   * guard and the group may take a moment longer), until it says gone: then one notification, and the
   * elector reads the lease as after any other change. Only a hint, like the file notifications.
   */
  watch(onChange: () => void, signal: AbortSignal): void {
    if (signal.aborted) return;
    let watcher: FSWatcher | undefined;
    let retry: NodeJS.Timeout | undefined;
    let looking = false;
    // One notification per holder process: every read decodes a new HolderInfo for the same process.
    let reported: string | undefined;
    const processOf = (h: HolderInfo | undefined): string | undefined => (h === undefined ? undefined : `${h.pid}/${h.startTime ?? "?"}`);
    const lookAtHolder = (): void => {
      const holder = this.localHolder;
      if (holder === undefined || processOf(holder) === reported || looking) return;
      try {
        process.kill(holder.pid, 0);
        return; // it exists (or its pid was reused): nothing to tell
      } catch (err) {
        if (errno(err) !== "ESRCH") return;
      }
      looking = true;
      void writerState(holder, this.writer)
        .then((state) => {
          if (state.state !== "gone" || signal.aborted || processOf(holder) !== processOf(this.localHolder)) return;
          reported = processOf(holder);
          notify();
        })
        .catch(() => undefined)
        .finally(() => {
          looking = false;
        });
    };
    const holderTimer = setInterval(lookAtHolder, HOLDER_LOOK_MS);
    holderTimer.unref();
    const notify = (): void => {
      try {
        onChange();
      } catch {
        // a notification is only a hint; the elector's retry loop stays authoritative
      }
    };
    let gaps = 0;
    // The directory may not exist yet (a campaign can start before any process created it); try again
    // soon, then every second.
    const restartLater = (): void => {
      retry = setTimeout(start, gaps++ < 10 ? 50 : 1000);
      retry.unref();
    };
    // The directory, not the file: the file is replaced by rename() on every write. fs.watch() resolves
    // the path synchronously, on the main thread: on a hung mount it would freeze the whole process,
    // signals included. So on a file system that can hang it starts only once the location answered
    // (`contact`) and a bounded lstat of the directory just did: only a mount that hangs within that
    // instant can still freeze us. On a local one it starts at once, as callers expect of watch().
    const start = (): void => {
      if (signal.aborted) return;
      if (!this.locationMayHang()) {
        watchNow();
        return;
      }
      this.contact()
        .then(() => {
          if (signal.aborted || this.closed) throw new Error("stopped");
          return this.fs.run(`lstat ${this.dir}`, this.dir, () => lstat(this.dir));
        })
        .then(
          () => watchNow(),
          () => {
            if (!signal.aborted && !this.closed) restartLater();
          },
        );
    };
    const watchNow = (): void => {
      if (signal.aborted || this.fs.hung() !== undefined) {
        if (!signal.aborted) restartLater();
        return;
      }
      try {
        watcher = fsWatch(this.dir, { persistent: false }, (_event, filename) => {
          if (filename === null || filename === this.name) notify();
        });
        // A release made while we were not watching went unseen: let the elector look once.
        if (gaps > 0) notify();
        watcher.on("error", () => {
          watcher?.close();
          watcher = undefined;
          notify();
          restartLater();
        });
      } catch {
        restartLater();
      }
    };
    const stop = (): void => {
      watcher?.close();
      watcher = undefined;
      clearTimeout(retry);
      clearInterval(holderTimer);
      this.watchers.delete(stop);
      signal.removeEventListener("abort", stop);
    };
    this.watchers.add(stop);
    signal.addEventListener("abort", stop, { once: true });
    start();
  }

  async close(): Promise<void> {
    this.closed = true;
    closeWriter(this.writer);
    for (const stop of [...this.watchers]) stop();
    this.probe?.cancel();
  }

  /**
   * Runs one operation of the lock, rejecting as soon as `signal` aborts. Before the first one, checks
   * that the location answers at all (`contact`). Remembers that an operation completed here, which
   * turns later hangs from "unusable location" (exit 69) into an outage.
   */
  private operation<T>(signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
    return withAbort(signal, async () => {
      await this.contact();
      // Given up on meanwhile: touch nothing.
      signal?.throwIfAborted();
      try {
        const result = await work();
        this.established = true;
        return result;
      } catch (error) {
        if (!isFileSystemTimeout(error) && (error as Error | null)?.name !== "AbortError") this.established = true;
        throw error;
      }
    });
  }

  /**
   * On a file system that can hang (network, FUSE: see probe.ts) the first contact is a stat of our
   * paths by a throw-away process, killed if it does not answer: then the location is refused (exit
   * 69) while no call of ours is stuck, and the process can still exit. Once per lock while it works.
   */
  private contact(): Promise<void> {
    if (this.established) return Promise.resolve();
    this.ready ??= (async () => {
      if (!this.locationMayHang()) return;
      // Closed while reading the mount table (a campaign stopped at once): no probe can be cancelled now.
      if (this.closed) throw new LockError(`the lock on ${this.path} was closed before its location was checked`);
      const probe = probePaths([this.dir, this.path, this.mutex.path], this.fs.timeoutMs);
      this.probe = probe;
      try {
        await probe.done;
      } catch (error) {
        if (error instanceof ProbeTimeoutError) throw this.fs.error(error.path, `did not answer within ${seconds(this.fs.timeoutMs)} (stat)`);
        throw error;
      } finally {
        this.probe = undefined;
      }
    })().catch((error: unknown) => {
      // Ask again next time: the mount may have come back.
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  private locationMayHang(): boolean {
    this.mayHang ??= needsProbe(mountTypes(this.dir));
    return this.mayHang;
  }

  private helperPath(kind: string): string {
    return join(this.dir, `.${this.name}~${kind}`);
  }

  private wrote(record: LeaderElectionRecord, content: string): void {
    this.generation++;
    this.expected = content;
    this.corrupt = undefined;
    this.firstSeen(content);
    if (record.holderIdentity === "") this.guardedPgid = undefined;
  }

  private firstSeen(content: string | null): void {
    if (content === null) this.seen = undefined;
    else if (this.seen?.content !== content) this.seen = { content, since: this.clock.now() };
  }

  /**
   * A write on behalf of another holder (`leader-run step-down` adding its hand-over request) keeps
   * that holder's process facts: the liveness check must still see the leader, its child's group and
   * its guard, not the short-lived process that wrote the request, or a standby would take over as
   * soon as that process exits while the old child is still stopping.
   */
  private async encodeUpdate(record: LeaderElectionRecord, current: string, landBy: number): Promise<string> {
    if (record.holderIdentity !== "" && record.holderIdentity !== this.id) {
      let previous: LeaseFile | undefined;
      try {
        previous = decodeLeaseFile(current);
      } catch {
        previous = undefined;
      }
      if (previous?.holder && previous.record.holderIdentity === record.holderIdentity) {
        return encodeLeaseFile(record, { ...previous.holder, landBy: Math.ceil(landBy) });
      }
    }
    return this.encode(record, landBy);
  }

  private async encode(record: LeaderElectionRecord, landBy: number): Promise<string> {
    const holder: HolderInfo = { ...(await currentProcess()), writer: this.writer, landBy: Math.ceil(landBy) };
    if (record.holderIdentity === this.id) {
      if (this.guardedPgid !== undefined) holder.childPgid = this.guardedPgid;
      const watchdog = this.watchdog;
      const startTime = await watchdog?.startTime;
      // Unknown start time: it is not running (or there is no /proc), and a bare pid could be reused.
      if (watchdog !== undefined && startTime !== null && startTime !== undefined) holder.watchdog = { pid: watchdog.pid, startTime };
    }
    return encodeLeaseFile(record, holder);
  }

  /** Rewrites our own current record with the guarded processes; see `setGuardedProcessGroup`. */
  private async persistGuard(signal: AbortSignal | undefined): Promise<boolean> {
    if (typeof this.expected !== "string") return false;
    const self = await currentProcess();
    // Our last write named them already (a start gate prepared while we waited is in the acquiring
    // write): nothing to write, and no critical section between acquiring and starting the command.
    if (this.names(this.expected, self)) return true;
    return this.critical(signal, async (mutex) => {
      const current = await this.readLease();
      if (current === null || current !== this.expected) return false;
      let file: LeaseFile;
      try {
        file = decodeLeaseFile(current);
      } catch {
        return false;
      }
      if (file.record.holderIdentity !== this.id || file.holder === null || !isOurs(file.holder, self, this.writer)) return false;
      if (this.landedLate(current, file)) return false;
      const content = await this.encode(file.record, mutex.landBy);
      if (content === current) return true;
      await this.commit(content, mutex, signal, "rename");
      this.wrote(file.record, content);
      return true;
    });
  }

  /** Whether `content`, a record of ours, names our current group and watchdog. */
  private names(content: string, self: ProcessIdentity): boolean {
    let file: LeaseFile;
    try {
      file = decodeLeaseFile(content);
    } catch {
      return false;
    }
    const holder = file.holder;
    if (file.record.holderIdentity !== this.id || holder === null || !isOurs(holder, self, this.writer)) return false;
    if (holder.childPgid !== this.guardedPgid) return false;
    return this.watchdog === undefined || holder.watchdog?.pid === this.watchdog.pid;
  }

  /**
   * Before we write a record naming our identity over one that already names it: was that written by
   * us, or by a process that is gone with everything it ran? If another live process wrote it, two
   * processes share the identity (client-go would let both lead). If its writer is gone but its child or
   * watchdog may still run, or this host cannot tell, we wait like for any holder, until the bytes have
   * sat unchanged for a lease duration.
   */
  private async checkOwnIdentity(current: string): Promise<void> {
    let file: LeaseFile;
    try {
      file = decodeLeaseFile(current);
    } catch {
      return; // a corrupt file the CAS already allows us to overwrite
    }
    if (file.record.holderIdentity !== this.id) return;
    const lease = `lease "${this.name}" (${this.path})`;
    const lateMs = this.lateBy(current, file);
    if (lateMs !== undefined) {
      // Ours or not, it landed after its writer stopped counting on it: maybe over a newer leader's
      // record (docs/safety.md). Waited out like a foreign holder, from when we first saw it.
      const leftMs = this.leftToWait(current, file);
      if (leftMs <= 0) return;
      throw new SameIdentityHeldError(
        `${lease} names identity "${this.id}" in a write that landed ${seconds(lateMs)} after its deadline (a paused process or a ` +
          `file system that hung and recovered), so it may have replaced a newer leader's record; waiting for it to expire (${(leftMs / 1000).toFixed(1)}s left)`,
      );
    }
    const writer = await writerState(file.holder, this.writer);
    if (writer.state === "us" || writer.state === "gone") return;
    if (writer.state === "running") {
      throw new IdentityClashError(
        `${lease} is held by identity "${this.id}" in another live process (pid ${writer.pid}${writer.pid === process.pid ? ": this one, through another FileLock" : ""}); --identity must be unique per process`,
      );
    }
    const leftMs = this.leftToWait(current, file);
    if (leftMs <= 0) return;
    const who =
      writer.state === "stopping"
        ? `an earlier process (pid ${writer.pid}) that is gone, but ${writer.what}`
        : `a process this host cannot inspect${file.holder ? ` (pid ${file.holder.pid} on ${file.holder.hostname || "?"})` : ""}`;
    throw new SameIdentityHeldError(
      `${lease} is held by identity "${this.id}" from ${who}; waiting for it to stop or for the lease to expire (${(leftMs / 1000).toFixed(1)}s left)`,
    );
  }

  /** How long `current` must still stay unchanged before it may be overwritten like an expired lease. */
  private leftToWait(current: string, file: LeaseFile): number {
    this.firstSeen(current);
    const since = this.seen?.since ?? this.clock.now();
    const waitMs = Math.max(this.leaseDurationMs, file.record.leaseDurationSeconds * 1000);
    return since + waitMs - this.clock.now();
  }

  /**
   * Whether these bytes (just read) landed after their writer's `landBy`: written by a rename the
   * writer had abandoned, or one that a pause delayed past its check. Nobody counts such a record,
   * not even its writer: it may have landed over the record of a process that broke the critical
   * section meanwhile, and that process's work is named nowhere now.
   */
  private landedLate(content: string, file: LeaseFile): boolean {
    return this.lateBy(content, file) !== undefined;
  }

  private lateBy(content: string, file: LeaseFile): number | undefined {
    const landBy = file.holder?.landBy;
    const read = this.lastRead;
    if (landBy === undefined || read === undefined || read.content !== content) return undefined;
    // The same file we saw land in time: a later ctime is a metadata change, not a late landing.
    if (this.landedInTime?.content === content && this.landedInTime.ino === read.ino) return undefined;
    const late = read.ctimeMs - landBy;
    if (late <= LATE_MARGIN_MS) return undefined;
    // A lease duration after it landed (the file system's clock, by which the critical section's age
    // is judged too), the leader it may have replaced has stopped: from then on it is an ordinary record.
    // Waiting only from our own first look instead held it for good against processes that look once
    // (--no-wait), e.g. a release whose ctime a chmod moved.
    if (Date.now() - read.ctimeMs >= Math.max(this.leaseDurationMs, file.record.leaseDurationSeconds * 1000)) return undefined;
    return late;
  }

  /** The landBy of `current` (just read) when it landed late, else undefined. */
  private lateLandBy(current: string): number | undefined {
    let file: LeaseFile;
    try {
      file = decodeLeaseFile(current);
    } catch {
      return undefined;
    }
    return this.lateBy(current, file) !== undefined ? file.holder?.landBy : undefined;
  }

  /** Unreadable bytes block takeover until they have been seen unchanged for a whole lease duration. */
  private corruptRecord(content: string, err: Error, asBase: boolean): LeaderElectionRecord {
    const now = this.clock.now();
    if (this.corrupt?.content !== content) this.corrupt = { content, since: now };
    const seenMs = now - this.corrupt.since;
    if (seenMs >= this.leaseDurationMs) {
      if (asBase) this.expected = content;
      return { ...emptyRecord(), leaderTransitions: salvageTransitions(content) };
    }
    const left = ((this.leaseDurationMs - seenMs) / 1000).toFixed(1);
    throw new CorruptRecordError(
      `lease file ${this.path} is corrupt: ${err.message}; it will be overwritten only after staying unchanged ` +
        `for the lease duration (${left}s left); fix or remove it if no leader-run process uses it`,
      { cause: err },
    );
  }

  /** The record's holder when it is another process on this host (one whose death we can see). */
  private async otherLocalProcess(holder: HolderInfo | null): Promise<HolderInfo | undefined> {
    if (holder === null) return undefined;
    const self = await currentProcess();
    return sameHost(self, holder) && holder.pid !== self.pid ? holder : undefined;
  }

  /** The holder process on this host is gone, and so are its child's group and its watchdog. */
  private async holderIsGone(file: LeaseFile): Promise<boolean> {
    if (file.record.holderIdentity === "") return false;
    return (await writerState(file.holder, this.writer)).state === "gone";
  }

  private async critical<T>(signal: AbortSignal | undefined, fn: (mutex: MutexHandle) => Promise<T>): Promise<T> {
    // This object's own critical sections queue here instead of polling the mutex file against each
    // other: a leader's first renewal and the writes naming its guard and child group come within
    // milliseconds of each other, and a loser's 2 → 50 ms backoff delayed the child's start. Other
    // processes still meet on the mutex file, and every section still takes it.
    const before = this.criticalTail;
    let done = (): void => undefined;
    const mine = new Promise<void>((resolve) => (done = resolve));
    this.criticalTail = before.then(() => mine);
    try {
      await before;
      const mutex = await this.mutex.acquire(signal);
      try {
        return await fn(mutex);
      } finally {
        await mutex.release();
      }
    } finally {
      done();
    }
  }

  /** Temp file, fsync, then rename() over the lease (or link(), which fails if it exists), fsync dir. */
  private async commit(content: string, mutex: MutexHandle, signal: AbortSignal | undefined, how: "rename" | "link", inTime = true): Promise<void> {
    await this.removeStrays();
    const tmp = this.helperPath(`tmp-${process.pid}-${randomHex(6)}`);
    let placed = false;
    let ino = -1;
    try {
      await this.fs.run(`write ${tmp}`, tmp, async () => {
        const fh = await open(tmp, CREATE_FLAGS, 0o644);
        try {
          await fh.writeFile(content);
          await fh.sync();
          ino = (await fh.stat()).ino;
        } finally {
          await fh.close();
        }
      });
      // Nothing may land once the caller has given up on us or our critical section was broken.
      signal?.throwIfAborted();
      await mutex.verify();
      signal?.throwIfAborted();
      if (how === "rename") {
        await this.fs.run(`rename ${tmp}`, this.path, () => rename(tmp, this.path));
        placed = true;
      } else {
        try {
          await this.fs.run(`link ${tmp}`, this.path, () => link(tmp, this.path));
        } catch (err) {
          if (errno(err) === "EEXIST") throw new AlreadyExistsError(`lease file ${this.path} already exists`);
          throw err;
        }
      }
      // Readers judge a write by when it landed (the file's ctime against landBy): so do we. A write
      // that landed late is not counted, here or by anyone (see `landedLate`).
      const st = await this.fs.run(`lstat ${this.path}`, this.path, () => lstat(this.path));
      const lateMs = st.ctimeMs - mutex.landBy;
      if (st.ino !== ino || lateMs > LATE_MARGIN_MS) {
        throw new LockError(
          st.ino !== ino
            ? `lease file ${this.path} was replaced right after our write; not counting it`
            : `lease file ${this.path}: our write landed ${seconds(lateMs)} after its deadline (a paused process or a slow file system); not counting it`,
        );
      }
      this.landedInTime = inTime ? { content, ino } : undefined;
    } catch (err) {
      throw this.fsError(err, `cannot write lease file ${this.path}`);
    } finally {
      if (!placed) await this.fs.run(`unlink ${tmp}`, tmp, () => unlink(tmp)).catch(() => undefined);
    }
    await this.syncDir();
  }

  /**
   * Temp files of a writer that crashed, and stale locks a breaker moved aside before crashing. We hold
   * the critical section, so no live writer is using them; one whose section was broken must not commit.
   */
  private async removeStrays(): Promise<void> {
    const prefixes = [`.${this.name}~tmp-`, `.${this.name}~lock.broken-`, `.${this.name}~lock.new-`];
    // One bounded call, one unlink at a time: a hang holds one thread, not one per stray.
    await this.fs
      .run(`clean up ${this.dir}`, this.dir, async () => {
        for (const e of await readdir(this.dir)) {
          if (prefixes.some((p) => e.startsWith(p))) await unlink(join(this.dir, e)).catch(() => undefined);
        }
      })
      .catch((err: unknown) => {
        if (isFileSystemTimeout(err)) throw err;
      });
  }

  private async syncDir(): Promise<void> {
    await this.fs
      .run(`fsync ${this.dir}`, this.dir, async () => {
        const fh = await open(this.dir, constants.O_RDONLY);
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      })
      .catch(() => {
        // Durability across power loss only; some filesystems cannot fsync a directory. (A hang here
        // is not ours to report: the record is in place, and the next call meets the hang anyway.)
      });
  }

  /** The lease file's bytes, or null when absent. Refuses symlinks, foreign files and writable modes. */
  private readLease(): Promise<string | null> {
    return this.fs.run(`read ${this.path}`, this.path, () => this.readLeaseNow());
  }

  private async readLeaseNow(): Promise<string | null> {
    let fh;
    try {
      fh = await open(this.path, READ_FLAGS);
    } catch (err) {
      if (errno(err) === "ENOENT") return null;
      if (errno(err) === "ELOOP") {
        throw new PermanentLockError(`lease file ${this.path} is a symlink; remove it (rm ${this.path})`);
      }
      throw this.fsError(err, `cannot read lease file ${this.path}`);
    }
    try {
      const st = await fh.stat();
      this.checkSafe(st, this.path, "lease file", "remove it");
      if (!st.isFile()) throw new PermanentLockError(`lease file ${this.path} is not a regular file; remove it`);
      if (st.size > MAX_FILE_BYTES) {
        throw new CorruptRecordError(`lease file ${this.path} is corrupt: ${st.size} bytes is far too large; remove it`);
      }
      const content = await fh.readFile("utf8");
      // The fd pins the inode, so this ctime is when these bytes landed (rename and link set it).
      this.lastRead = { content, ctimeMs: st.ctimeMs, ino: st.ino };
      return content;
    } finally {
      await fh.close();
    }
  }

  /**
   * Creates the directory (0700) if missing (unless `create` is false: then says whether it exists);
   * refuses one that others could tamper with.
   */
  private async ensureDir(create = true): Promise<boolean> {
    let st: Stats;
    const lstatDir = (): Promise<Stats> => this.fs.run(`lstat ${this.dir}`, this.dir, () => lstat(this.dir));
    try {
      st = await lstatDir();
    } catch (err) {
      if (errno(err) !== "ENOENT") throw this.fsError(err, `cannot use lock directory ${this.dir}`);
      if (!create) return false;
      await this.makeDirs(this.dir);
      try {
        st = await lstatDir();
      } catch (err2) {
        throw this.fsError(err2, `cannot create lock directory ${this.dir}`);
      }
    }
    const fix = "remove it or choose another directory with --lock file:<dir>";
    if (st.isSymbolicLink()) throw new PermanentLockError(`lock directory ${this.dir} is a symlink; ${fix}`);
    if (!st.isDirectory()) throw new PermanentLockError(`lock directory ${this.dir} is not a directory; ${fix}`);
    this.checkSafe(st, this.dir, "lock directory", fix);
    return true;
  }

  /**
   * `mkdir -p`, one level at a time. Not `mkdir(…, { recursive: true })`: on a path under /proc it
   * never returns (and spins a libuv thread), so leader-run hung with no message. Here a parent that
   * cannot hold directories fails at once with the path and the reason.
   */
  private async makeDirs(dir: string): Promise<void> {
    const missing: string[] = [];
    let at = dir;
    for (;;) {
      try {
        await this.fs.run(`lstat ${at}`, at, () => lstat(at));
        break;
      } catch (err) {
        if (errno(err) !== "ENOENT") throw this.fsError(err, `cannot create lock directory ${dir}: cannot use ${at}`);
      }
      missing.unshift(at);
      const parent = dirname(at);
      if (parent === at) break;
      at = parent;
    }
    for (const path of missing) {
      try {
        await this.fs.run(`mkdir ${path}`, path, () => mkdir(path, { mode: 0o700 }));
      } catch (err) {
        if (errno(err) === "EEXIST") continue; // another process made it meanwhile
        if (errno(err) === "ENOENT") {
          // The parent exists but cannot hold directories (/proc, /sys): no retry will change that.
          throw new PermanentLockError(`cannot create lock directory ${dir}: ${dirname(path)} cannot hold directories (mkdir ${path}: ENOENT); choose another directory with --lock file:<dir>`, { cause: err });
        }
        throw this.fsError(err, `cannot create lock directory ${dir}: mkdir ${path} failed`);
      }
    }
  }

  private checkSafe(st: Stats, path: string, what: string, fix: string): void {
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new PermanentLockError(`${what} ${path} is owned by uid ${st.uid}, not by this user (uid ${uid}); ${fix}`);
    }
    if ((st.mode & 0o022) !== 0) {
      throw new PermanentLockError(`${what} ${path} is writable by group or others (mode ${octal(st.mode)}); run chmod go-w ${path}`);
    }
  }

  private fsError(err: unknown, what: string): Error {
    if (err instanceof LockError || (err as Error | null)?.name === "AbortError") return err as Error;
    const code = errno(err);
    if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
      return new PermanentLockError(`${what}: permission denied (${code}); make it writable by this user or choose another directory with --lock file:<dir>`, { cause: err });
    }
    // The path itself is unusable: retrying cannot help, so fail at once (exit 69) naming why.
    const unusable: Record<string, string> = {
      ENOTDIR: "a part of the path is a file, not a directory",
      ENAMETOOLONG: "the path is too long",
      ELOOP: "the path has a symlink loop",
    };
    if (code !== undefined && unusable[code] !== undefined) {
      return new PermanentLockError(`${what}: ${unusable[code]} (${code}); choose another directory with --lock file:<dir>`, { cause: err });
    }
    return new LockError(`${what}: ${(err as Error).message}`, { cause: err });
  }
}
