import { readFile, readlink } from "node:fs/promises";
import { hostname } from "node:os";

/**
 * Who a process is, in terms that survive pid reuse: the file lock records this for the holder of a
 * lease (and for the holder of its short critical section) so a peer on the same host can tell
 * "that process is gone" without waiting for a lease to expire.
 *
 * `bootId`, `pidNamespace` and `startTime` come from /proc and are null where it is unavailable (not
 * Linux, /proc not mounted, or /proc belonging to another pid namespace); a null means "cannot tell",
 * and callers then fall back to time-based expiry.
 */
export interface ProcessIdentity {
  pid: number;
  hostname: string;
  /** /proc/sys/kernel/random/boot_id: distinguishes hosts and reboots. */
  bootId: string | null;
  /** readlink /proc/self/ns/pid, e.g. `pid:[4026531836]`: pids mean the same only inside one namespace. */
  pidNamespace: string | null;
  /** /proc/<pid>/stat field 22 (clock ticks after boot): tells a reused pid from the original. */
  startTime: number | null;
}

/** "cannot tell" is always treated like "alive" by callers: only proof of death speeds anything up. */
export type Liveness = "alive" | "gone" | "unknown";

interface ProcStat {
  state: string;
  startTime: number;
}

/** Parses /proc/<pid>/stat; the command name (field 2) may contain spaces and parentheses. */
export function parseProcStat(text: string): (ProcStat & { pid: number }) | null {
  const open = text.indexOf("(");
  const close = text.lastIndexOf(")");
  if (open < 0 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  const rest = text.slice(close + 1).trim().split(/\s+/);
  // rest[0] is field 3 (state), so field N is rest[N - 3].
  const state = rest[0];
  const startTime = Number(rest[22 - 3]);
  if (!Number.isSafeInteger(pid) || state === undefined || !Number.isSafeInteger(startTime)) return null;
  return { pid, state, startTime };
}

async function readProcStat(pid: number | "self"): Promise<(ProcStat & { pid: number }) | null> {
  return parseProcStat(await readFile(`/proc/${pid}/stat`, "utf8"));
}

let cached: Promise<ProcessIdentity> | undefined;

/** This process's identity, computed once. */
export function currentProcess(): Promise<ProcessIdentity> {
  cached ??= computeCurrentProcess();
  return cached;
}

async function computeCurrentProcess(): Promise<ProcessIdentity> {
  const base: ProcessIdentity = {
    pid: process.pid,
    hostname: hostname(),
    bootId: null,
    pidNamespace: null,
    startTime: null,
  };
  try {
    const [bootId, pidNamespace, stat] = await Promise.all([
      readFile("/proc/sys/kernel/random/boot_id", "utf8"),
      readlink("/proc/self/ns/pid"),
      readProcStat("self"),
    ]);
    // A /proc mounted from another pid namespace would describe other processes than kill() reaches.
    if (stat === null || stat.pid !== process.pid || bootId.trim() === "" || pidNamespace === "") return base;
    return { ...base, bootId: bootId.trim(), pidNamespace, startTime: stat.startTime };
  } catch {
    return base;
  }
}

/** Both processes see the same kernel and the same pid numbering, so our kill() and /proc describe theirs. */
export function sameHost(a: ProcessIdentity, b: ProcessIdentity): boolean {
  return a.bootId !== null && a.pidNamespace !== null && a.bootId === b.bootId && a.pidNamespace === b.pidNamespace;
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/**
 * Whether the process `pid` started at `startTime` still runs. Only meaningful for a process on the same
 * host (see `sameHost`). A zombie counts as gone: it can no longer write or hold anything.
 */
export async function processLiveness(pid: number, startTime: number | null): Promise<Liveness> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return "unknown";
  try {
    process.kill(pid, 0);
  } catch (err) {
    const code = errno(err);
    if (code === "ESRCH") return "gone";
    if (code !== "EPERM") return "unknown";
  }
  let stat: ProcStat | null;
  try {
    stat = await readProcStat(pid);
  } catch (err) {
    // kill() saw it a moment ago: ENOENT now means it exited in between.
    return errno(err) === "ENOENT" ? "gone" : "unknown";
  }
  if (stat === null) return "unknown";
  if (stat.state === "Z" || stat.state === "X") return "gone";
  if (startTime !== null && stat.startTime !== startTime) return "gone"; // the pid was reused
  return "alive";
}

/** Whether process group `pgid` has any member left (zombies included: kill() cannot tell them apart). */
export function groupLiveness(pgid: number): Liveness {
  if (!Number.isSafeInteger(pgid) || pgid <= 1) return "unknown";
  try {
    process.kill(-pgid, 0);
    return "alive";
  } catch (err) {
    const code = errno(err);
    if (code === "ESRCH") return "gone";
    return code === "EPERM" ? "alive" : "unknown";
  }
}
