import { randomHex } from "../../builtin.js";
import { constants, watch as fsWatch, type FSWatcher } from "node:fs";
import { basename, dirname } from "node:path";
import { link, lstat, open, rename, unlink } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { LockError, PermanentLockError } from "../../election/lock.js";
import { currentProcess, errno, processLiveness, sameHost, type ProcessIdentity } from "./process.js";

/**
 * The short critical section that makes the file lock's compare-and-swap exact across processes.
 *
 * Node has no flock(2), so this is an O_EXCL lock file naming its holder (pid, boot id, pid namespace,
 * start time). Why not proper-lockfile: it installs process-wide signal handlers on import (signal-exit),
 * breaks stale locks by mtime only (a crashed holder blocks for the whole stale period), and its
 * rmdir-then-mkdir break lets two breakers both win. Here:
 *
 * - A lock whose holder is on this host and provably dead is stale at once; any lock older than `staleMs`
 *   (by mtime) is stale too, which covers holders we cannot inspect and holders that hang.
 * - A breaker moves the stale file aside with rename() and checks that what it moved is what it judged
 *   stale; if a fresh lock slipped in between, it links it back. So a live holder is never robbed
 *   silently.
 * - A holder re-checks, right before it commits, that its lock file is still its own and that it has
 *   spent less than `staleMs / 2` inside; otherwise it writes nothing. Its rename() is bounded
 *   (`commitBoundMs`), and nobody breaks the lock by age before `staleMs / 2 + commitBoundMs` has
 *   passed, so a slow rename within its bound never lands over a breaker's record. A rename that lands
 *   later anyway (a holder paused between that check and its rename(), or a rename abandoned at its
 *   bound that a hung file system completes later) is recognised by its landing time (the lease file's
 *   ctime) against the hold's `landBy`, and counted by nobody (lock.ts `landedLate`, docs/safety.md).
 */
export interface FileMutexOptions {
  /** A lock older than this is broken. Default 5000 ms. */
  staleMs?: number;
  /** Give up waiting after this long. Default `2 * staleMs`. */
  timeoutMs?: number;
  /**
   * The longest one commit step (rename, link) may take once `verify` passed: the holder's `run`
   * bound. A lock is broken by age only after `staleMs / 2 + commitBoundMs + margin` too, so a slow
   * rename that is still within its bound can never land over the record of a process that broke the
   * lock meanwhile. Default 0.
   */
  commitBoundMs?: number;
  /**
   * The first wait between attempts while the lock is held; it doubles up to 50 ms (or this, if longer).
   * A change of the lock file ends a wait early. Default 2 ms.
   */
  retryMs?: number;
  /**
   * Runs each file-system step (`what`: the call and its path); the file lock bounds them in time
   * (bounded.ts). Default: as they are.
   */
  run?: <T>(what: string, path: string, work: () => Promise<T>) => Promise<T>;
}

interface LockInfo extends ProcessIdentity {
  token: string;
  /**
   * The holder's own break age (absent in lock files of older versions): a breaker waits for the longer
   * of its own and this, so a holder with a longer renew deadline (a longer commit bound) than the
   * breaker's is not broken while its rename may still land.
   */
  breakAfterMs?: number;
}

export interface MutexHandle {
  /** Throws unless the lock is still ours and young enough that nobody may have broken it. */
  verify(): Promise<void>;
  release(): Promise<void>;
  /**
   * When a commit under this hold has landed or been abandoned, at the latest: the lock file's mtime
   * (the file system's clock, as breakers judge its age) plus the check window and the commit bound.
   * A record that lands later may have landed over the record of a process that broke the lock, so
   * nobody may count it as its own or as provably abandoned by a dead holder (lock.ts `landedLate`).
   */
  readonly landBy: number;
}

/** Room for clock-rate differences and the breaker's own steps between its age check and its rename. */
const COMMIT_MARGIN_MS = 500;
/** The longest break age a lock file may ask for (a renew deadline of about a minute). */
const MAX_BREAK_AFTER_MS = 65_000;

const CREATE_FLAGS = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;
/** O_NONBLOCK: a FIFO put where the lock file belongs must not block open() (it would hang for good). */
const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW;

/** The lock file's bytes; a FIFO or another special file reads as nothing instead of blocking. */
async function readLockFile(path: string): Promise<string> {
  const fh = await open(path, READ_FLAGS);
  try {
    if (!(await fh.stat()).isFile()) return "";
    return await fh.readFile("utf8");
  } finally {
    await fh.close();
  }
}

export class FileMutex {
  readonly path: string;
  private readonly staleMs: number;
  /** Age after which a lock is broken: never while its holder may still be committing. */
  private readonly breakAfterMs: number;
  private readonly commitBoundMs: number;
  private readonly timeoutMs: number;
  private readonly retryMs: number;
  private readonly run: <T>(what: string, path: string, work: () => Promise<T>) => Promise<T>;

  constructor(path: string, options: FileMutexOptions = {}) {
    this.path = path;
    this.staleMs = options.staleMs ?? 5000;
    this.commitBoundMs = options.commitBoundMs ?? 0;
    this.breakAfterMs = Math.max(this.staleMs, this.staleMs / 2 + this.commitBoundMs + COMMIT_MARGIN_MS);
    this.timeoutMs = options.timeoutMs ?? 2 * this.breakAfterMs;
    this.retryMs = options.retryMs ?? 2;
    this.run = options.run ?? ((_what, _path, work) => work());
  }

  async acquire(signal?: AbortSignal): Promise<MutexHandle> {
    const self = await currentProcess();
    const info: LockInfo = { ...self, token: randomHex(16), breakAfterMs: this.breakAfterMs };
    const content = JSON.stringify(info);
    const start = performance.now();
    let wait = this.retryMs;
    let holder = "an unknown process";
    let timeoutMs = this.timeoutMs;
    let removal: RemovalWatch | undefined;
    try {
      for (;;) {
        signal?.throwIfAborted();
        const acquiredAt = performance.now();
        const mtimeMs = await this.run(`create ${this.path}`, this.path, () => this.tryCreate(content));
        if (mtimeMs !== undefined) return this.handle(content, acquiredAt, mtimeMs);
        // Held: from now on a change of the lock file (its holder's unlink) ends the wait at once. Set up
        // before the next attempt, so an unlink after that attempt's EEXIST is never missed.
        removal ??= RemovalWatch.start(this.path);
        const verdict = await this.run(`inspect ${this.path}`, this.path, () => this.breakIfStale(self));
        holder = verdict.holder ?? holder;
        // A holder with a longer break age than ours is waited for that long, not timed out before it.
        timeoutMs = Math.max(timeoutMs, 2 * (verdict.breakAfterMs ?? 0));
        if (performance.now() - start > timeoutMs) {
          throw new LockError(
            `timed out after ${Math.round(timeoutMs / 1000)}s waiting for the lock file ${this.path} held by ${holder}; ` +
              `remove it if that process is not running leader-run`,
          );
        }
        if (verdict.broken) continue; // gone or broken: try again at once
        await removal.next(wait * (0.5 + Math.random()), signal);
        wait = Math.min(wait * 2, Math.max(50, this.retryMs));
      }
    } finally {
      removal?.close();
    }
  }

  /**
   * Creates the lock file with its content in one step: the content goes to a private file first, which
   * link() then publishes (EEXIST if the lock is taken). An O_EXCL create followed by a write would leave
   * an empty lock file, whose holder nobody can judge, if we died in between: every other writer would
   * then wait the whole stale period.
   *
   * @returns the lock file's mtime when created, undefined when it is held
   */
  private async tryCreate(content: string): Promise<number | undefined> {
    const draft = `${this.path}.new-${process.pid}-${randomHex(6)}`;
    let fh;
    try {
      fh = await open(draft, CREATE_FLAGS, 0o600);
    } catch (err) {
      const code = errno(err);
      if (code === "EACCES" || code === "EPERM" || code === "EROFS") {
        throw new PermanentLockError(`cannot create the lock file ${this.path} (${code}); make its directory writable by this user`, { cause: err });
      }
      throw new LockError(`cannot create the lock file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      await fh.writeFile(content);
      // link() keeps the inode: this is the mtime breakers will judge the lock's age by.
      const { mtimeMs } = await fh.stat();
      await fh.close();
      await link(draft, this.path);
      return mtimeMs;
    } catch (err) {
      await fh.close().catch(() => undefined);
      // EEXIST: held by someone else. ENOENT: a holder cleaning up strays removed our draft; just retry.
      const code = errno(err);
      if (code === "EEXIST" || code === "ENOENT") return undefined;
      throw new LockError(`cannot write the lock file ${this.path}: ${(err as Error).message}`, { cause: err });
    } finally {
      await unlink(draft).catch(() => undefined);
    }
  }

  private handle(content: string, acquiredAt: number, mtimeMs: number): MutexHandle {
    const maxHoldMs = this.staleMs / 2;
    const stillOurs = async (): Promise<boolean> => {
      try {
        return (await this.run(`read ${this.path}`, this.path, () => readLockFile(this.path))) === content;
      } catch (err) {
        if (errno(err) === "ENOENT") return false;
        throw err;
      }
    };
    return {
      // Never later than the break age every breaker honours (a lock file's ask is capped at
      // MAX_BREAK_AFTER_MS): a rename landing after a break must read as late, even when our own bound is
      // longer (a renew deadline over a minute); such a slow rename of ours then does not count either.
      landBy: mtimeMs + Math.min(maxHoldMs + this.commitBoundMs, MAX_BREAK_AFTER_MS - COMMIT_MARGIN_MS),
      verify: async () => {
        const held = performance.now() - acquiredAt;
        if (held > maxHoldMs) {
          throw new LockError(`spent ${Math.round(held)}ms holding ${this.path} (limit ${maxHoldMs}ms); not writing, will retry`);
        }
        if (!(await stillOurs())) throw new LockError(`the lock file ${this.path} was broken by another process; not writing, will retry`);
      },
      release: async () => {
        // If it was broken, the file there now belongs to somebody else.
        if (await stillOurs().catch(() => false)) await this.run(`unlink ${this.path}`, this.path, () => unlink(this.path)).catch(() => undefined);
      },
    };
  }

  /** Breaks the lock if stale; `broken` also when it vanished meanwhile (so: try again at once). */
  private async breakIfStale(self: ProcessIdentity): Promise<{ broken: boolean; holder?: string; breakAfterMs?: number }> {
    let before;
    let content: string;
    try {
      before = await lstat(this.path);
      content = await readLockFile(this.path);
      const after = await lstat(this.path);
      if (after.ino !== before.ino || after.mtimeMs !== before.mtimeMs) return { broken: true };
    } catch (err) {
      if (errno(err) === "ENOENT") return { broken: true };
      throw new LockError(`cannot inspect the lock file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    const info = parseLockInfo(content);
    const holder = info ? `pid ${info.pid} on ${info.hostname}` : undefined;
    // Only we write it, and always as a regular file: anything else (a FIFO, a device) is debris.
    if (before.isFile() && !(await this.isStale(self, info, before.mtimeMs))) return { broken: false, holder, breakAfterMs: info?.breakAfterMs };

    const aside = `${this.path}.broken-${randomHex(6)}`;
    try {
      await rename(this.path, aside);
    } catch (err) {
      if (errno(err) === "ENOENT") return { broken: true };
      throw new LockError(`cannot break the stale lock file ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    let moved = false;
    try {
      const st = await lstat(aside);
      moved = st.ino === before.ino && st.mtimeMs === before.mtimeMs && (await readLockFile(aside)) === content;
    } catch {
      // Someone cleaned it up meanwhile: whatever it was, it is gone.
      return { broken: true };
    }
    // A fresh lock slipped in between our check and rename(): put it back for its holder.
    if (!moved) await link(aside, this.path).catch(() => undefined);
    await unlink(aside).catch(() => undefined);
    return { broken: true };
  }

  private async isStale(self: ProcessIdentity, info: LockInfo | null, mtimeMs: number): Promise<boolean> {
    const age = Date.now() - mtimeMs;
    const breakAfterMs = Math.max(this.breakAfterMs, info?.breakAfterMs ?? 0);
    // A negative age beyond staleMs means the wall clock was set back since it was written.
    if (Math.abs(age) > breakAfterMs) return true;
    if (info === null || !sameHost(self, info)) return false;
    return (await processLiveness(info.pid, info.startTime)) === "gone";
  }
}

function parseLockInfo(content: string): LockInfo | null {
  try {
    const v = JSON.parse(content) as Partial<LockInfo> | null;
    if (typeof v !== "object" || v === null || !Number.isSafeInteger(v.pid) || (v.pid ?? 0) <= 0) return null;
    return {
      pid: v.pid as number,
      hostname: typeof v.hostname === "string" ? v.hostname : "?",
      bootId: typeof v.bootId === "string" ? v.bootId : null,
      pidNamespace: typeof v.pidNamespace === "string" ? v.pidNamespace : null,
      startTime: typeof v.startTime === "number" ? v.startTime : null,
      token: typeof v.token === "string" ? v.token : "",
      // Bounded: a lock file claiming an hour must not block everyone for an hour.
      ...(typeof v.breakAfterMs === "number" && v.breakAfterMs > 0 ? { breakAfterMs: Math.min(v.breakAfterMs, MAX_BREAK_AFTER_MS) } : {}),
    };
  } catch {
    return null; // empty (holder crashed right after creating it) or foreign: judged by age alone
  }
}

/**
 * Wakes a waiter when the lock file changes (inotify on its directory): a critical section lasts a few
 * milliseconds, and a waiter that slept its backoff past the holder's unlink added that sleep to every
 * contended write (a standby's acquire right after the leader's release: 20-30 ms of a hand-over).
 * The backoff still bounds each wait, for file systems that report nothing (NFS) or a watch that fails.
 */
class RemovalWatch {
  private wake: (() => void) | undefined;
  private changed = false;
  private readonly watcher: FSWatcher | undefined;

  private constructor(path: string) {
    const name = basename(path);
    try {
      // persistent: false, so a waiter's watch never keeps the process alive by itself.
      this.watcher = fsWatch(dirname(path), { persistent: false }, (_event, file) => {
        if (file === null || file === name) this.signal();
      });
      this.watcher.on("error", () => this.signal());
    } catch {
      this.watcher = undefined; // out of inotify watches, or no support on this file system: the backoff alone
    }
  }

  static start(path: string): RemovalWatch {
    return new RemovalWatch(path);
  }

  private signal(): void {
    this.changed = true;
    this.wake?.();
  }

  /** Resolves after `ms`, at a change of the lock file, or (rejecting) at the abort. */
  async next(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    if (this.changed) {
      this.changed = false;
      return;
    }
    const timer = new AbortController();
    const onAbort = (): void => timer.abort();
    signal?.addEventListener("abort", onAbort, { once: true });
    this.wake = () => timer.abort();
    try {
      await delay(ms, undefined, { signal: timer.signal });
    } catch (error) {
      signal?.throwIfAborted();
      if (!(error instanceof Error && error.name === "AbortError")) throw error;
    } finally {
      this.wake = undefined;
      this.changed = false;
      signal?.removeEventListener("abort", onAbort);
    }
  }

  close(): void {
    this.watcher?.close();
  }
}
