import type { HolderInfo } from "./format.js";
import { currentProcess, groupLiveness, processLiveness, sameHost, type ProcessIdentity } from "./process.js";

/**
 * Holder liveness for the file lock: what became of the process that wrote a lease file, as far as
 * this host can tell. The compare-and-swap store (lock.ts) asks this to take over from a provably dead
 * holder at once, and to refuse our identity written by another live writer.
 */

export function samePid(a: ProcessIdentity, b: ProcessIdentity): boolean {
  return (
    a.pid === b.pid &&
    a.hostname === b.hostname &&
    a.bootId === b.bootId &&
    a.pidNamespace === b.pidNamespace &&
    a.startTime === b.startTime
  );
}

/** Writer tokens of the FileLock objects of this process that are not closed. */
const liveWriters = new Set<string>();

/** A FileLock object's writer token, live until `closeWriter`. */
export function openWriter(token: string): void {
  liveWriters.add(token);
}

export function closeWriter(token: string): void {
  liveWriters.delete(token);
}

/**
 * The holder is this lock object, or a closed one of this process (as after a restart). Two live lock
 * objects in one process with one identity are two candidates, as two processes would be.
 */
export function isOurs(holder: HolderInfo, self: ProcessIdentity, writer: string): boolean {
  if (!samePid(holder, self)) return false;
  return holder.writer === undefined || holder.writer === writer || !liveWriters.has(holder.writer);
}

/**
 * - `us`: this lock object;
 * - `running`: proven to run (same host, pid alive, same start time), or another lock object of ours;
 * - `gone`: it, its child's process group (zombies aside) and its watchdog are all provably gone;
 * - `stopping`: it is gone, but its group or watchdog is not (the group is being killed, or survived);
 * - `unknown`: not inspectable (another host or pid namespace, no /proc, no leaderRun).
 */
export type WriterState =
  | { state: "us" | "gone" | "unknown" }
  | { state: "running"; pid: number }
  | { state: "stopping"; pid: number; what: string };

export async function writerState(holder: HolderInfo | null, writer: string): Promise<WriterState> {
  if (holder === null) return { state: "unknown" };
  const self = await currentProcess();
  if (samePid(holder, self)) return isOurs(holder, self, writer) ? { state: "us" } : { state: "running", pid: holder.pid };
  if (!sameHost(self, holder)) return { state: "unknown" };
  const liveness = await processLiveness(holder.pid, holder.startTime);
  if (liveness === "alive" && holder.startTime !== null) return { state: "running", pid: holder.pid };
  if (liveness !== "gone") return { state: "unknown" };
  if (holder.watchdog !== undefined && (await processLiveness(holder.watchdog.pid, holder.watchdog.startTime)) !== "gone") {
    return { state: "stopping", pid: holder.pid, what: `its watchdog (pid ${holder.watchdog.pid}) still runs` };
  }
  if (holder.childPgid !== undefined && (await groupLiveness(holder.childPgid)) !== "gone") {
    return { state: "stopping", pid: holder.pid, what: `its child's process group ${holder.childPgid} still runs` };
  }
  return { state: "gone" };
}
