import { readdir, readFile, readlink } from "node:fs/promises";
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
  /** Field 5: the process group. */
  pgrp: number;
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
  const pgrp = Number(rest[5 - 3]);
  const startTime = Number(rest[22 - 3]);
  if (!Number.isSafeInteger(pid) || state === undefined || !Number.isSafeInteger(pgrp) || !Number.isSafeInteger(startTime)) return null;
  return { pid, state, pgrp, startTime };
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

/** The errno code of a failed system call (`ENOENT`, …), if any. */
export function errno(err: unknown): string | undefined {
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
  let stat: Awaited<ReturnType<typeof readProcStat>>;
  try {
    stat = await readProcStat(pid);
  } catch (err) {
    // kill() saw it a moment ago: ENOENT now means it exited in between.
    return errno(err) === "ENOENT" ? "gone" : "unknown";
  }
  if (stat === null) return "unknown";
  if (await isDead(stat)) return "gone";
  if (startTime !== null && stat.startTime !== startTime) return "gone"; // the pid was reused
  return "alive";
}

/** The start time of a running process, to record it in a form that survives pid reuse; null if unknown. */
export async function processStartTime(pid: number): Promise<number | null> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  try {
    const stat = await readProcStat(pid);
    return stat === null || stat.pid !== pid || (await isDead(stat)) ? null : stat.startTime;
  } catch {
    return null;
  }
}

/**
 * A zombie (or dying) process. The state shown in /proc/<pid>/stat is its main thread's: a process whose
 * main thread exited while other threads run shows "Z" too, so a zombie counts only without other threads.
 */
async function isDead(stat: ProcStat & { pid: number }): Promise<boolean> {
  if (stat.state === "X") return true;
  if (stat.state !== "Z") return false;
  try {
    return (await readdir(`/proc/${stat.pid}/task`)).every((tid) => tid === String(stat.pid));
  } catch (err) {
    return errno(err) === "ENOENT";
  }
}

/** Scans of /proc that must agree before a group holding only zombies counts as gone. */
const GROUP_SCANS = 5;

/**
 * Whether process group `pgid` has a member that can still run. Zombies do not count: they can no
 * longer do anything, and an orphaned child killed after its leader-run died may stay a zombie for
 * good where PID 1 does not reap (a container without an init).
 *
 * kill(-pgid, 0) cannot tell zombies apart, so when it reports members this looks at /proc: the group
 * leader first (usually alive, one read), then every process. A member may fork and exit while a scan
 * runs, leaving its child out of the listing; so "only zombies" is believed only when two consecutive
 * scans found exactly the same zombies, and a changing group stays "alive".
 */
export async function groupLiveness(pgid: number): Promise<Liveness> {
  if (!Number.isSafeInteger(pgid) || pgid <= 1) return "unknown";
  const exists = (): Liveness => {
    try {
      process.kill(-pgid, 0);
      return "alive";
    } catch (err) {
      const code = errno(err);
      if (code === "ESRCH") return "gone";
      return code === "EPERM" ? "alive" : "unknown";
    }
  };
  const first = exists();
  if (first !== "alive") return first;
  try {
    const leader = await readProcStat(pgid);
    if (leader !== null && leader.pgrp === pgid && !(await isDead(leader))) return "alive";
  } catch {
    // no leader (it exited first) or no /proc: the scan decides
  }
  let previous: string | undefined;
  for (let i = 0; i < GROUP_SCANS; i++) {
    const zombies = await scanGroup(pgid);
    // "alive" also when /proc cannot be read: kill() saw members and we cannot tell what they are.
    if (zombies === "alive") return "alive";
    if (exists() === "gone") return "gone";
    // Members kill() sees but /proc does not show (hidepid, another user): nothing proves them dead.
    if (zombies.length === 0) return "alive";
    const key = zombies.join(",");
    if (key === previous) return "gone";
    previous = key;
  }
  return "alive";
}

/** The zombie members of group `pgid` (sorted), or "alive" if it has a live one or /proc is unreadable. */
async function scanGroup(pgid: number): Promise<number[] | "alive"> {
  let entries: string[];
  try {
    entries = await readdir("/proc");
  } catch {
    return "alive";
  }
  const zombies: number[] = [];
  let live = false;
  await Promise.all(
    entries
      .filter((e) => /^\d+$/.test(e))
      .map(async (e) => {
        let stat;
        try {
          stat = await readProcStat(Number(e));
        } catch {
          return; // exited meanwhile
        }
        if (stat === null || stat.pgrp !== pgid) return;
        if (await isDead(stat)) zombies.push(stat.pid);
        else live = true;
      }),
  );
  return live ? "alive" : zombies.sort((a, b) => a - b);
}
