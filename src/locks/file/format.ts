import { recordFromJSON, recordToJSON, type LeaderElectionRecord } from "../../election/record.js";
import type { ProcessIdentity } from "./process.js";

/**
 * The lease file: client-go's `LeaderElectionRecord` JSON (millisecond timestamps) plus a `leaderRun`
 * object naming the process that wrote it, so a peer on the same host can see that the holder is gone.
 */
export interface HolderInfo extends ProcessIdentity {
  /** The process group of the command the holder runs; the lease is not free while it has members. */
  childPgid?: number;
  /**
   * The holder's orphan watchdog, which kills that group if the holder dies: the lease is not free
   * while it runs either (it may still be stopping a group the record does not name yet).
   */
  watchdog?: { pid: number; startTime: number };
  /**
   * Which lock object of the process wrote it (random per object): two objects in one process with one
   * identity are two candidates. Absent in files of older versions: then the pid alone decides.
   */
  writer?: string;
  /**
   * Wall-clock ms (the file system's clock) by which this write landed or was abandoned by its writer
   * (the critical section's `landBy`). A file whose ctime is later landed late and counts for nobody.
   * Absent in files of older versions.
   */
  landBy?: number;
}

export interface LeaseFile {
  record: LeaderElectionRecord;
  /** Absent when a foreign writer (or a future format) left it out: then no fast takeover. */
  holder: HolderInfo | null;
}

export function encodeLeaseFile(record: LeaderElectionRecord, holder: HolderInfo): string {
  const leaderRun: Record<string, unknown> = {
    pid: holder.pid,
    hostname: holder.hostname,
    bootId: holder.bootId,
    pidNamespace: holder.pidNamespace,
    startTime: holder.startTime,
  };
  if (holder.writer !== undefined) leaderRun.writer = holder.writer;
  if (holder.landBy !== undefined) leaderRun.landBy = holder.landBy;
  if (holder.childPgid !== undefined) leaderRun.childPgid = holder.childPgid;
  if (holder.watchdog !== undefined) {
    leaderRun.watchdogPid = holder.watchdog.pid;
    leaderRun.watchdogStartTime = holder.watchdog.startTime;
  }
  return `${JSON.stringify({ ...recordToJSON(record, 3), leaderRun }, null, 2)}\n`;
}

/** Throws a TypeError saying what is wrong (the caller adds the file name). */
export function decodeLeaseFile(content: string): LeaseFile {
  if (content.trim() === "") throw new TypeError("it is empty (truncated?)");
  let json: unknown;
  try {
    json = JSON.parse(content);
  } catch (err) {
    throw new TypeError(`it is not valid JSON (${(err as Error).message})`);
  }
  const record = recordFromJSON(json);
  const raw = (json as Record<string, unknown>).leaderRun;
  return { record, holder: raw === undefined || raw === null ? null : decodeHolder(raw) };
}

function decodeHolder(raw: unknown): HolderInfo {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new TypeError("leaderRun must be an object");
  const o = raw as Record<string, unknown>;
  const int = (k: string, min: number): number => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
      throw new TypeError(`leaderRun.${k} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const strOrNull = (k: string): string | null => {
    const v = o[k];
    if (v === undefined || v === null) return null;
    if (typeof v !== "string") throw new TypeError(`leaderRun.${k} must be a string, got ${JSON.stringify(v)}`);
    return v;
  };
  const holder: HolderInfo = {
    pid: int("pid", 1),
    hostname: strOrNull("hostname") ?? "",
    bootId: strOrNull("bootId"),
    pidNamespace: strOrNull("pidNamespace"),
    startTime: o.startTime === undefined || o.startTime === null ? null : int("startTime", 0),
  };
  const writer = strOrNull("writer");
  if (writer !== null) holder.writer = writer;
  if (o.landBy !== undefined && o.landBy !== null) holder.landBy = int("landBy", 0);
  // Group 1 would make kill(-1, 0) ask about every process: never a valid child group.
  if (o.childPgid !== undefined && o.childPgid !== null) holder.childPgid = int("childPgid", 2);
  if (o.watchdogPid !== undefined && o.watchdogPid !== null) {
    holder.watchdog = { pid: int("watchdogPid", 1), startTime: int("watchdogStartTime", 0) };
  }
  return holder;
}

/** Best effort for a damaged file: keep the term counting up so fencing tokens stay monotonic. */
export function salvageTransitions(content: string): number {
  const m = /"leaderTransitions"\s*:\s*(\d{1,15})\s*[,}\n]/.exec(content);
  return m?.[1] === undefined ? 0 : Number(m[1]);
}
