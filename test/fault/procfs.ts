/**
 * Minimal /proc readers shared by the fault sampler and the campaign driver. Every read tolerates the
 * process vanishing between listing and reading (ENOENT/ESRCH come back as undefined), because in a
 * fault campaign processes die all the time and a vanished process is simply not alive.
 */
import { readFileSync, readdirSync } from "node:fs";

/** CLOCK_MONOTONIC in ms: the same clock in every process on the host (uv_hrtime), unlike Date.now(). */
export function monoMs(): number {
  return Number(process.hrtime.bigint() / 1000n) / 1000;
}

export function listPids(): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    const c = name.charCodeAt(0);
    if (c >= 48 && c <= 57) out.push(Number(name));
  }
  return out;
}

export interface ProcStat {
  pid: number;
  /** R, S, D, T (stopped), t (traced), Z (zombie), X (dead), I … */
  state: string;
  ppid: number;
  pgrp: number;
  /** Clock ticks after boot: with the pid, identifies a process across pid reuse. */
  starttime: number;
  comm: string;
}

export function readStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1");
  } catch {
    return undefined;
  }
  // comm may contain spaces and parentheses: the fields start after the last ')'.
  const close = text.lastIndexOf(")");
  const comm = text.slice(text.indexOf("(") + 1, close);
  const f = text.slice(close + 2).split(" ");
  // f[0] is field 3 (state); field N is f[N - 3].
  return { pid, state: f[0] ?? "?", ppid: Number(f[1]), pgrp: Number(f[2]), starttime: Number(f[19]), comm };
}

export function readCmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    if (raw === "") return [];
    return raw.replace(/\0$/, "").split("\0");
  } catch {
    return undefined;
  }
}

/** The environment the current program image was started with (root, or the same user, may read it). */
export function readEnviron(pid: number): Map<string, string> | undefined {
  let raw: string;
  try {
    raw = readFileSync(`/proc/${pid}/environ`, "utf8");
  } catch {
    return undefined;
  }
  const env = new Map<string, string>();
  for (const entry of raw.split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return env;
}

/** Alive for the purpose of "a copy exists": anything but a zombie or a dead task. A stopped (T) process counts. */
export function isLiveState(state: string): boolean {
  return state !== "Z" && state !== "X" && state !== "x";
}

/** The children of `pid` (by ppid), from one pass over /proc. */
export function childrenOf(pid: number): ProcStat[] {
  const out: ProcStat[] = [];
  for (const p of listPids()) {
    const s = readStat(p);
    if (s !== undefined && s.ppid === pid && isLiveState(s.state)) out.push(s);
  }
  return out;
}

export function describePid(pid: number): string {
  const cmd = readCmdline(pid);
  const st = readStat(pid);
  return `${pid} [${st?.state ?? "?"}] ${cmd === undefined ? "(gone)" : cmd.join(" ")}`;
}
