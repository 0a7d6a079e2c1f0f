import { readdirSync, readFileSync } from "node:fs";
import { constants } from "node:os";

/**
 * Process-group primitives. The child runs in its own group (its pid is the group id), so one
 * `kill(-pgid, sig)` reaches the shell, `npm run` wrappers and every grandchild that stayed in it.
 */

/** The signal's number, e.g. 15 for SIGTERM; RangeError for names this platform does not know. */
export function signalNumber(signal: NodeJS.Signals): number {
  const n = (constants.signals as Record<string, number | undefined>)[signal];
  if (n === undefined) throw new RangeError(`unknown signal ${signal}: use a name such as SIGTERM or SIGINT`);
  return n;
}

/** Accepts `TERM`, `sigterm`, `SIGTERM` or `15`; undefined when this platform has no such signal. */
export function parseSignal(text: string): NodeJS.Signals | undefined {
  const signals = constants.signals as Record<string, number | undefined>;
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) {
    const n = Number(trimmed);
    const found = Object.keys(signals).find((name) => signals[name] === n);
    return found as NodeJS.Signals | undefined;
  }
  const upper = trimmed.toUpperCase();
  const name = upper.startsWith("SIG") ? upper : `SIG${upper}`;
  return signals[name] === undefined ? undefined : (name as NodeJS.Signals);
}

/** Sends `signal` to every process of the group. False when the group no longer exists. */
export function killGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ESRCH") return false;
    // EPERM: the group exists but none of its processes may be signalled by us (a setuid program).
    if (code === "EPERM") return true;
    throw err;
  }
}

/** Whether any process, zombies included, still carries this group id. */
export function groupExists(pgid: number): boolean {
  return killGroup(pgid, 0);
}

/**
 * Whether any process of the group is still running. Zombies do not count: they are dead, hold no
 * resources a standby could clash with, and when leader-run is PID 1 without an init they are never
 * reaped at all (Node cannot reap orphans), so counting them would stall every stop.
 *
 * Without a readable /proc (not Linux), any member counts, so "alive" is the safe answer.
 */
export function groupHasLiveMembers(pgid: number): boolean {
  if (!groupExists(pgid)) return false;
  const live = countLiveMembers(pgid);
  return live === undefined || live > 0;
}

/** Non-zombie processes in the group according to /proc; undefined when /proc cannot tell. */
export function countLiveMembers(pgid: number): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return undefined;
  }
  let live = 0;
  let readAny = false;
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited while we scanned
    }
    readAny = true;
    const stat = parseGroupStat(text);
    if (stat !== undefined && stat.pgrp === pgid && stat.state !== "Z" && stat.state !== "X") live++;
  }
  return readAny ? live : undefined;
}

/** State (field 3) and process group (field 5) of /proc/<pid>/stat; field 2 may contain ") ". */
export function parseGroupStat(text: string): { state: string; pgrp: number } | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  const rest = text.slice(close + 1).trim().split(/\s+/);
  const state = rest[0];
  const pgrp = Number(rest[2]);
  if (state === undefined || !Number.isSafeInteger(pgrp)) return undefined;
  return { state, pgrp };
}
