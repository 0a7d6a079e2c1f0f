import { NotFoundError } from "../election/lock.js";
import type { ResourceLock } from "../election/lock.js";
import type { LeaderElectionRecord } from "../election/record.js";
import { openLock } from "../locks/registry.js";
import { formatDuration } from "./duration.js";
import { ExitCode, UnavailableError } from "./errors.js";
import type { LogSink } from "./log.js";
import { DEFAULTS } from "./options.js";
import type { LeaseTarget, StatusOptions } from "./options.js";

/**
 * `leader-run status`: one read of the lease record. Whether the lease is live is judged from the
 * recorded renew time plus lease duration against this host's wall clock: fine for a person or a
 * monitoring check, but only informational (clocks differ between hosts), which is why the election
 * itself never decides that way.
 */

/** How long a one-shot command waits for the backend before giving up (exit 69). */
export const ONE_SHOT_TIMEOUT_MS = 15_000;

export type LeaseState = "live" | "expired" | "released" | "absent";

export interface LeaseStatus {
  lease: string;
  /** Where the lease lives (the lock's `describe()`). */
  location: string;
  state: LeaseState;
  /** null when nobody holds it. */
  holder: string | null;
  acquireTime: Date | null;
  renewTime: Date | null;
  /** renewTime + leaseDurationSeconds, when both are known. */
  expireTime: Date | null;
  leaseDurationSeconds: number | null;
  /** leaderTransitions: the fencing token of the current (or last) term. */
  term: number | null;
}

export function leaseStatus(name: string, location: string, record: LeaderElectionRecord | null, now: Date): LeaseStatus {
  if (record === null) {
    return { lease: name, location, state: "absent", holder: null, acquireTime: null, renewTime: null, expireTime: null, leaseDurationSeconds: null, term: null };
  }
  const expireTime = record.renewTime ? new Date(record.renewTime.getTime() + record.leaseDurationSeconds * 1000) : null;
  let state: LeaseState;
  if (record.holderIdentity === "") state = "released";
  else if (expireTime === null || expireTime.getTime() <= now.getTime()) state = "expired";
  else state = "live";
  return {
    lease: name,
    location,
    state,
    holder: record.holderIdentity === "" ? null : record.holderIdentity,
    acquireTime: record.acquireTime,
    renewTime: record.renewTime,
    expireTime,
    leaseDurationSeconds: record.leaseDurationSeconds,
    term: record.leaderTransitions,
  };
}

/** Opens the lock of a one-shot command (status, release); it only reads or writes once. */
export async function openTargetLock(target: LeaseTarget): Promise<ResourceLock> {
  // One read or write: the run command's timings only matter to the file lock's corrupt-file rule.
  const options: Parameters<typeof openLock>[1] = {
    name: target.name,
    identity: target.identity,
    leaseDurationMs: DEFAULTS.leaseDurationMs,
    renewDeadlineMs: DEFAULTS.renewDeadlineMs,
    namespace: target.namespace,
    kubeconfig: target.kubeconfig,
    tlsCaFile: target.tlsCaFile,
    tlsCertFile: target.tlsCertFile,
    tlsKeyFile: target.tlsKeyFile,
    etcdPasswordFile: target.etcdPasswordFile,
    pgTable: target.pgTable,
  };
  return (await openLock(target.lock, options)).lock;
}

/** Runs `work` with a signal that aborts after ONE_SHOT_TIMEOUT_MS, turning the timeout into exit 69. */
export async function withTimeout<T>(what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new UnavailableError(`${what}: no answer from the lock backend within ${formatDuration(ONE_SHOT_TIMEOUT_MS)}`)),
    ONE_SHOT_TIMEOUT_MS,
  );
  try {
    return await work(controller.signal);
  } catch (e) {
    if (controller.signal.aborted && controller.signal.reason instanceof UnavailableError) throw controller.signal.reason;
    throw e;
  } finally {
    clearTimeout(timer);
  }
}

export async function readRecord(lock: ResourceLock, signal: AbortSignal): Promise<LeaderElectionRecord | null> {
  try {
    return (await lock.get(signal)).record;
  } catch (e) {
    if (e instanceof NotFoundError) return null;
    throw e;
  }
}

export async function runStatus(options: StatusOptions, stdout: LogSink, now: () => Date = () => new Date(), warn: (message: string) => void = () => undefined): Promise<number> {
  const lock = await openTargetLock(options);
  if (options.watch) {
    try {
      return await watchStatus(options, lock, stdout, now, warn);
    } finally {
      await lock.close?.();
    }
  }
  try {
    const record = await withTimeout(`reading lease ${options.name}`, (signal) => readRecord(lock, signal));
    const status = leaseStatus(options.name, lock.describe(), record, now());
    stdout.write(options.output === "json" ? `${JSON.stringify(statusJSON(status))}\n` : statusText(status, now()));
    return status.state === "live" ? ExitCode.OK : ExitCode.NO_HOLDER;
  } finally {
    await lock.close?.();
  }
}

export function statusJSON(s: LeaseStatus): Record<string, unknown> {
  return {
    lease: s.lease,
    location: s.location,
    state: s.state,
    live: s.state === "live",
    holder: s.holder,
    acquireTime: s.acquireTime?.toISOString() ?? null,
    renewTime: s.renewTime?.toISOString() ?? null,
    expireTime: s.expireTime?.toISOString() ?? null,
    leaseDurationSeconds: s.leaseDurationSeconds,
    term: s.term,
  };
}

function relative(date: Date, now: Date): string {
  const ms = Math.round((date.getTime() - now.getTime()) / 1000) * 1000;
  if (ms === 0) return "now";
  return ms > 0 ? `in ${formatDuration(ms)}` : `${formatDuration(-ms)} ago`;
}

/** The state names are the JSON ones (scripts may grep either output); the rest explains them. */
const STATE_TEXT: Record<LeaseState, string> = {
  live: "live (held and renewed in time)",
  expired: "expired (nobody renewed it in time; the next candidate takes it)",
  released: "released (free)",
  absent: "absent (free, never created)",
};

export function statusText(s: LeaseStatus, now: Date): string {
  const lines: [string, string][] = [
    ["lease", s.lease],
    ["location", s.location],
    ["state", STATE_TEXT[s.state]],
  ];
  if (s.holder !== null) lines.push(["holder", s.holder]);
  const time = (d: Date | null): string => (d ? `${d.toISOString()} (${relative(d, now)})` : "-");
  if (s.state !== "absent") {
    lines.push(["since", time(s.acquireTime)], ["renewed", time(s.renewTime)]);
    if (s.state === "live" || s.state === "expired") lines.push([s.state === "live" ? "expires" : "expired", time(s.expireTime)]);
    lines.push(["duration", s.leaseDurationSeconds === null ? "-" : formatDuration(s.leaseDurationSeconds * 1000)]);
    lines.push(["term", String(s.term ?? "-")]);
  }
  return lines.map(([k, v]) => `${`${k}:`.padEnd(10)}${v}\n`).join("");
}

/** How often `status --watch` reads the record when the backend offers no change notification (or misses one). */
export const WATCH_POLL_MS = 1000;

/**
 * `status --watch`: reads the record every WATCH_POLL_MS, and at once when the backend's `watch()`
 * reports a change, and prints one line per change of holder or state (a lease that expires is a
 * change, a renewal is not). Works on every backend because reading is all it needs; runs until
 * SIGINT or SIGTERM.
 */
async function watchStatus(options: StatusOptions, lock: ResourceLock, stdout: LogSink, now: () => Date, warn: (message: string) => void): Promise<number> {
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let wake: (() => void) | undefined;
  lock.watch?.(() => wake?.(), stop.signal);
  let last: string | undefined;
  let failing = false;
  try {
    while (!stop.signal.aborted) {
      try {
        const record = await withTimeout(`reading lease ${options.name}`, (signal) => readRecord(lock, AbortSignal.any([signal, stop.signal])));
        failing = false;
        const status = leaseStatus(options.name, lock.describe(), record, now());
        const key = `${status.state}\u0000${status.holder ?? ""}\u0000${status.term ?? ""}`;
        if (key !== last) {
          last = key;
          stdout.write(options.output === "json" ? `${JSON.stringify({ time: now().toISOString(), ...statusJSON(status) })}\n` : watchLine(status, now()));
        }
      } catch (e) {
        if (stop.signal.aborted) break;
        // Keep watching through an outage, but say so once.
        if (!failing) warn(`cannot read lease ${options.name}: ${e instanceof Error ? e.message : String(e)}; still watching`);
        failing = true;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, WATCH_POLL_MS);
        function done(): void {
          clearTimeout(timer);
          stop.signal.removeEventListener("abort", done);
          wake = undefined;
          resolve();
        }
        wake = done;
        stop.signal.addEventListener("abort", done, { once: true });
      });
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return ExitCode.OK;
}

/** `2024-05-01T12:00:00.000Z live holder=web-1_ab12 term=3` */
function watchLine(s: LeaseStatus, now: Date): string {
  let line = `${now.toISOString()} ${s.state}`;
  if (s.holder !== null) line += ` holder=${s.holder}`;
  if (s.term !== null) line += ` term=${s.term}`;
  return `${line}\n`;
}
