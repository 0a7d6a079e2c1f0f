import { readFileSync } from "node:fs";
import { childProcess } from "../../builtin.js";

/**
 * Before the file lock touches a location on a file system that may hang (NFS, SMB, FUSE, 9p, ...),
 * a throw-away `sh` stats its paths. If that does not answer in time it is killed and the location is
 * refused, and no call of ours ever blocks a thread of this process: a process with a hung
 * thread-pool call cannot exit normally (see ../hung-calls.ts), so this is what lets a lock
 * directory on a dead mount end in a clean exit 69 instead of a hang.
 *
 * Local file systems are not probed (cron runs on the default /tmp must not pay a spawn); the mount
 * table (/proc/self/mountinfo, which never blocks) tells which file system holds the directory and
 * whether another one is mounted inside it. A symlink into a network mount is not seen this way; the
 * bounded calls (bounded.ts) still turn a hang there into an error, but the process then has a
 * hung thread.
 */

/** File systems that answer as long as the kernel runs. Anything else is probed. */
const LOCAL = new Set([
  "ext2", "ext3", "ext4", "xfs", "btrfs", "bcachefs", "f2fs", "jfs", "reiserfs", "zfs", "nilfs2",
  "tmpfs", "ramfs", "devtmpfs", "overlay", "squashfs", "erofs", "vfat", "exfat", "msdos", "ntfs3",
  "hfsplus", "proc", "sysfs", "cgroup", "cgroup2", "hugetlbfs", "mqueue", "devpts", "debugfs",
  "tracefs", "securityfs", "bpf", "pstore", "binfmt_misc", "configfs", "efivarfs", "autofs", "nsfs",
]);

/** `\040` and friends in mountinfo paths. */
function unescape(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/**
 * The file-system types of the mount holding `dir` and of every mount inside it; undefined when the
 * mount table cannot be read (not Linux): then nothing is probed.
 */
export function mountTypes(dir: string): string[] | undefined {
  let text: string;
  try {
    // Synchronous: procfs answers from the kernel's memory, and FileLock.watch must decide at once.
    text = readFileSync("/proc/self/mountinfo", "utf8");
  } catch {
    return undefined;
  }
  let holder: { point: string; type: string } | undefined;
  const inside: string[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    const point = fields[4];
    const type = fields[dash + 1];
    if (dash < 0 || point === undefined || type === undefined) continue;
    const mp = unescape(point);
    const prefix = mp.endsWith("/") ? mp : `${mp}/`;
    // Later lines mount over earlier ones at the same point.
    if (mp === dir || dir.startsWith(prefix)) {
      if (holder === undefined || mp.length >= holder.point.length) holder = { point: mp, type };
    } else if (mp.startsWith(`${dir}/`)) {
      inside.push(type);
    }
  }
  return holder === undefined ? inside : [holder.type, ...inside];
}

export function needsProbe(types: readonly string[] | undefined): boolean {
  return types !== undefined && types.some((t) => !LOCAL.has(t));
}

export class ProbeCancelledError extends Error {}

/** The probe of `path` did not answer in time. */
export class ProbeTimeoutError extends Error {
  constructor(readonly path: string) {
    super(`${path}: the file system did not answer (stat)`);
  }
}

/**
 * Stats `paths` in a child process, killed after `timeoutMs`. Resolves when it answered (whatever it
 * found); rejects with ProbeTimeoutError naming the path that did not answer; `cancel` kills it.
 */
export function probePaths(paths: readonly string[], timeoutMs: number): { done: Promise<void>; cancel(): void } {
  // One path at a time, saying which, so the error can name the one that hangs.
  const child = childProcess().spawn("/bin/sh", ["-c", 'for p do printf "%s\\0" "$p"; [ -e "$p" ] || :; done', "sh", ...paths], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  let out = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
  let timer: NodeJS.Timeout | undefined;
  let cancelled = false;
  const done = new Promise<void>((resolve, reject) => {
    child.once("error", (error) => {
      clearTimeout(timer);
      // No /bin/sh to probe with: fall back on the bounded calls alone.
      if ((error as NodeJS.ErrnoException).code === "ENOENT") resolve();
      else reject(error);
    });
    child.once("exit", () => {
      clearTimeout(timer);
      if (cancelled) reject(new ProbeCancelledError("the lock was closed"));
      else resolve();
    });
    timer = setTimeout(() => {
      child.kill("SIGKILL");
      const started = out.split("\0").filter((p) => p !== "");
      const at = started.at(-1) ?? paths[0] ?? "";
      reject(new ProbeTimeoutError(at));
    }, timeoutMs);
  });
  return {
    done,
    cancel: () => {
      cancelled = true;
      clearTimeout(timer);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
