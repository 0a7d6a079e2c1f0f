import { performance } from "node:perf_hooks";
import { LockError, PermanentLockError } from "../../election/lock.js";
import { callSettled, callStarted, hungCallEnded, hungCallStarted } from "../hung-calls.js";

/**
 * Every file-system call of the file lock, bounded in time.
 *
 * Node runs file-system calls on libuv's thread pool (4 threads by default). A call on a file system
 * that never answers (NFS server gone, FUSE daemon hung) blocks its thread for good, and nothing in
 * Node can cancel it. So each call (or short sequence that cleans up after itself, like open + read +
 * close) races a timer; when the timer wins, the call is abandoned: the caller gets an error naming
 * the path and "did not answer within Ns" at once, and the call finishes (or not) in the background.
 *
 * While an abandoned call in a directory has not returned, every new call there fails at once instead
 * of starting: a hung mount then holds at most the calls that were in flight when it hung (one or two),
 * not a new thread per retry, and the pool keeps threads for the rest of the process. When the
 * abandoned call returns, calls start again.
 *
 * The error is permanent (exit 69) until the lock has completed one whole operation there: a location
 * that never answered is a configuration problem. After that it is an outage like a backend that is
 * down: a leader loses at its renew deadline, a candidate keeps trying.
 */

/** Abandoned calls that have not returned, per directory. */
const stuck = new Map<string, { what: string; since: number }>();

export function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)}ms` : `${Number((ms / 1000).toFixed(1))}s`;
}

export class BoundedFs {
  constructor(
    /** Where the calls go: a hung call blocks every call here. */
    readonly dir: string,
    readonly timeoutMs: number,
    /** True while a timeout should be reported as permanent (the location never answered). */
    private readonly permanent: () => boolean,
  ) {}

  /** A description of the call that hangs here, if one does. */
  hung(): string | undefined {
    const s = stuck.get(this.dir);
    return s && `${s.what} has not returned for ${seconds(performance.now() - s.since)}`;
  }

  /**
   * Runs `work` (`what`: the call and its path, e.g. `lstat /x`), rejecting with a `LockError` naming
   * `path` if it does not settle within the bound or another call here still hangs.
   */
  run<T>(what: string, path: string, work: () => Promise<T>): Promise<T> {
    const blocked = this.hung();
    if (blocked !== undefined) return Promise.reject(this.error(path, `did not answer within ${seconds(this.timeoutMs)} (${blocked})`));
    return new Promise<T>((resolve, reject) => {
      let abandoned = false;
      callStarted();
      const call = Promise.resolve().then(work);
      const timer = setTimeout(() => {
        abandoned = true;
        callSettled();
        const entry = { what, since: performance.now() - this.timeoutMs };
        stuck.set(this.dir, entry);
        hungCallStarted(what);
        void call
          .catch(() => undefined)
          .finally(() => {
            if (stuck.get(this.dir) === entry) stuck.delete(this.dir);
            hungCallEnded();
          });
        reject(this.error(path, `did not answer within ${seconds(this.timeoutMs)} (${what} is still pending)`));
      }, this.timeoutMs);
      call.then(
        (value) => {
          if (abandoned) return;
          clearTimeout(timer);
          callSettled();
          resolve(value);
        },
        (error: unknown) => {
          if (abandoned) return;
          clearTimeout(timer);
          callSettled();
          reject(error as Error);
        },
      );
    });
  }

  error(path: string, reason: string): LockError {
    const message =
      `${path}: the file system ${reason}; a network or FUSE mount whose server is gone? ` +
      `choose a directory on a local file system with --lock file:<dir>`;
    return this.permanent() ? new FileSystemUnusableError(message) : new FileSystemHungError(message);
  }
}

/** A file-system call did not answer in time where calls answered before: an outage, retried. */
export class FileSystemHungError extends LockError {}

/** A file-system call did not answer in time where none ever did: the location is unusable (exit 69). */
export class FileSystemUnusableError extends PermanentLockError {}

export function isFileSystemTimeout(error: unknown): boolean {
  return error instanceof FileSystemHungError || error instanceof FileSystemUnusableError;
}
