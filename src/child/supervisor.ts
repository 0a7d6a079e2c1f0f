import { statSync } from "node:fs";
import { delimiter, join } from "node:path";
import { execa, type Result } from "execa";
import type { ChildEvent } from "./events.js";
import { groupHasLiveMembers, killGroup, signalNumber } from "./process-group.js";
import { sharedWatchdog, type Watchdog } from "./watchdog.js";

/**
 * Runs the guarded command in its own process group and stops that whole group on request.
 *
 * The child inherits our stdio (it owns stdout; our logs go to stderr) and gets exactly the
 * environment passed in. `detached: true` makes it a session and group leader (setsid), so its pid is
 * its group id and every signal we send reaches its shell, wrappers and grandchildren too. A side
 * effect: it has no controlling terminal, so a terminal's Ctrl-C reaches only leader-run, which
 * forwards it (see signals.ts); the child never gets it twice.
 */

/** How the child ended. `exitCode` is what a shell would report: the code, or 128+N for signal N. */
export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  exitCode: number;
}

export interface StartChildOptions {
  /** argv; with `shell`, the words are joined with spaces and run by `/bin/sh -c`. */
  command: string[];
  shell: boolean;
  /** The child's entire environment (nothing is inherited implicitly). */
  env: Record<string, string>;
  /** First signal `stop` sends to the group. */
  killSignal: NodeJS.Signals;
  /** Time between that signal and SIGKILL to the group. */
  killGraceMs: number;
  /** After SIGKILL, how long `stop` waits for the group to vanish before it gives up. Default 5000. */
  reapTimeoutMs?: number;
  cwd?: string;
  log?: (event: ChildEvent) => void;
  /** Orphan guard; default: the process-wide one. `false` disables it (tests only). */
  watchdog?: Watchdog | false;
}

export interface StopOptions {
  /**
   * The first signal; default the handle's `killSignal`. `null` sends none and only waits the grace
   * before SIGKILL: for a stop started by a signal that was already forwarded to the group.
   */
  firstSignal?: NodeJS.Signals | null;
}

export interface StopResult {
  /** Undefined only when the group leader could not be reaped within the bounded wait. */
  exit: ChildExit | undefined;
  /**
   * True once no live process of the group remains. False means something survived SIGKILL for the
   * whole `reapTimeoutMs` (uninterruptible I/O, a setuid process we may not signal): the lease must
   * not be released then; let it expire instead.
   */
  groupGone: boolean;
  /** Whether any signal was sent (false when the group had already ended by itself). */
  signalled: boolean;
  /** Whether SIGKILL was needed. */
  escalated: boolean;
}

export interface ChildHandle {
  readonly pid: number;
  /** Equals `pid`: the child leads its own group. */
  readonly pgid: number;
  /** `performance.now()` when the child was spawned; with `exited` gives the run time for restarts. */
  readonly startedAt: number;
  /** Resolves once the group leader has been reaped. Never rejects. */
  readonly exited: Promise<ChildExit>;
  /**
   * Sends the kill signal (and SIGCONT, so stopped processes act on it) to the whole group, SIGKILL to
   * the group after the grace, and resolves once the leader was reaped and no live process of the
   * group remains, or after the bounded wait. Idempotent: later calls return the first call's promise.
   * Call it after the child exited by itself too: it returns at once if the group is gone, and stops
   * stragglers (a shell's background jobs) otherwise, so the lease is never released while any lives.
   */
  stop(reason: string, options?: StopOptions): Promise<StopResult>;
  /** Forwards a signal to the whole group. False once the group is known to be gone. */
  signal(signal: NodeJS.Signals): boolean;
}

export type SpawnFailure = "not_found" | "not_executable" | "spawn_failed";

/**
 * The command could not be started. The CLI exits with `exitCode`, as shells do: 127 when the command
 * was not found, 126 when it exists but cannot be executed (no execute permission, a directory, a
 * missing `#!` interpreter) or could not be started at all.
 */
export class ChildSpawnError extends Error {
  readonly exitCode: 126 | 127;

  constructor(
    message: string,
    readonly reason: SpawnFailure,
    readonly errno: string | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ChildSpawnError";
    this.exitCode = reason === "not_found" ? 127 : 126;
  }
}

const SHELL = "/bin/sh";
const POLL_MS = 50;
const DEFAULT_REAP_TIMEOUT_MS = 5000;

/** The exit a shell would report: 128+N for a child killed by signal N. */
export function toChildExit(code: number | null, signal: NodeJS.Signals | null): ChildExit {
  if (signal !== null) return { code, signal, exitCode: 128 + signalNumber(signal) };
  // Neither code nor signal cannot happen for a reaped process; report a generic failure, never 0.
  return { code, signal, exitCode: code ?? 1 };
}

/** Spawns the child. Rejects with `ChildSpawnError` when it cannot be started. */
export async function startChild(options: StartChildOptions): Promise<ChildHandle> {
  const [first, ...rest] = options.command;
  if (first === undefined) throw new TypeError("startChild: command must not be empty");
  signalNumber(options.killSignal); // RangeError now rather than at stop time
  const file = options.shell ? SHELL : first;
  const args = options.shell ? ["-c", options.command.join(" ")] : rest;
  const watchdog = options.watchdog === false ? undefined : (options.watchdog ?? sharedWatchdog());
  // The guard must exist before the child does, so no moment exists in which our death orphans it.
  watchdog?.start();

  const subprocess = execa(file, args, {
    stdio: "inherit",
    detached: true,
    env: options.env,
    extendEnv: false,
    cwd: options.cwd,
    reject: false,
    // We stop the whole group ourselves; execa would signal only the leader.
    cleanup: false,
    forceKillAfterDelay: false,
    buffer: false,
  });

  const pid = subprocess.pid;
  if (pid === undefined) {
    const result = await subprocess;
    throw spawnError(options, file, result);
  }
  watchdog?.watch(pid, options.killSignal, options.killGraceMs);
  return new Supervised(pid, subprocess, options, watchdog);
}

class Supervised implements ChildHandle {
  readonly pgid: number;
  readonly startedAt = performance.now();
  readonly exited: Promise<ChildExit>;
  private exit: ChildExit | undefined;
  private groupGone = false;
  private stopping: Promise<StopResult> | undefined;

  constructor(
    readonly pid: number,
    subprocess: PromiseLike<Result>,
    private readonly options: StartChildOptions,
    private readonly watchdog: Watchdog | undefined,
  ) {
    this.pgid = pid;
    options.log?.({ type: "child_started", pid, pgid: pid, shell: options.shell });
    this.exited = Promise.resolve(subprocess).then(
      (result) => this.onExit(toChildExit(result.exitCode ?? null, (result.signal as NodeJS.Signals | undefined) ?? null)),
      // reject: false means execa never rejects; if it ever does, the child is still gone.
      () => this.onExit({ code: null, signal: null, exitCode: 1 }),
    );
  }

  signal(signal: NodeJS.Signals): boolean {
    if (this.groupGone) return false;
    return killGroup(this.pgid, signal);
  }

  stop(reason: string, options: StopOptions = {}): Promise<StopResult> {
    this.stopping ??= this.runStop(reason, options.firstSignal === undefined ? this.options.killSignal : options.firstSignal);
    return this.stopping;
  }

  private onExit(exit: ChildExit): ChildExit {
    this.exit = exit;
    this.options.log?.({
      type: "child_exited",
      pid: this.pid,
      code: exit.code,
      signal: exit.signal,
      exitCode: exit.exitCode,
      ranForMs: Math.round(performance.now() - this.startedAt),
    });
    if (this.isGone()) {
      this.markGone();
    } else if (this.stopping === undefined) {
      this.options.log?.({ type: "stragglers", pgid: this.pgid });
    }
    return exit;
  }

  private async runStop(reason: string, firstSignal: NodeJS.Signals | null): Promise<StopResult> {
    const { killGraceMs } = this.options;
    const reapTimeoutMs = this.options.reapTimeoutMs ?? DEFAULT_REAP_TIMEOUT_MS;
    let signalled = false;
    let escalated = false;
    if (!this.isGone()) {
      if (firstSignal !== null) {
        this.options.log?.({ type: "killing", pgid: this.pgid, signal: firstSignal, reason, graceMs: killGraceMs, escalation: false });
        signalled = this.signal(firstSignal) || signalled;
        if (firstSignal !== "SIGCONT" && firstSignal !== "SIGKILL") this.signal("SIGCONT");
      }
      if (!(await this.waitGone(killGraceMs))) {
        this.options.log?.({ type: "killing", pgid: this.pgid, signal: "SIGKILL", reason, graceMs: killGraceMs, escalation: true });
        signalled = this.signal("SIGKILL") || signalled;
        escalated = true;
        if (!(await this.waitGone(reapTimeoutMs))) {
          this.options.log?.({ type: "group_survived", pgid: this.pgid, waitedMs: reapTimeoutMs });
        }
      }
    }
    const groupGone = this.isGone();
    if (groupGone) this.markGone();
    return { exit: this.exit, groupGone, signalled, escalated };
  }

  /** True once the leader was reaped and no live process carries the group id. */
  private isGone(): boolean {
    if (this.groupGone) return true;
    // Before the leader is reaped its pid pins the group; nothing to scan.
    return this.exit !== undefined && !groupHasLiveMembers(this.pgid);
  }

  private markGone(): void {
    this.groupGone = true;
    this.watchdog?.unwatch(this.pgid);
  }

  private async waitGone(ms: number): Promise<boolean> {
    const deadline = performance.now() + ms;
    while (!this.isGone()) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await this.pause(Math.min(POLL_MS, left));
    }
    return true;
  }

  /** Sleeps `ms`, waking early when the leader is reaped. */
  private async pause(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const elapsed = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    });
    await (this.exit === undefined ? Promise.race([elapsed, this.exited]) : elapsed);
    clearTimeout(timer);
  }
}

function spawnError(options: StartChildOptions, file: string, result: Result): ChildSpawnError {
  const errno = typeof result.code === "string" ? result.code : undefined;
  const cause = result.cause;
  if (options.shell) {
    const reason = errno === "ENOENT" ? "not_found" : errno === "EACCES" ? "not_executable" : "spawn_failed";
    return new ChildSpawnError(`cannot run ${SHELL} for --shell (${errno ?? "unknown error"}): install a POSIX shell or drop --shell`, reason, errno, { cause });
  }
  const found = locate(file, options.env.PATH, options.cwd);
  if (errno === "ENOENT" && found === undefined) {
    const hint = file.includes("/") ? "check the path" : "check the spelling and PATH";
    return new ChildSpawnError(`command not found: ${file}: ${hint}`, "not_found", errno, { cause });
  }
  if (errno === "ENOENT") {
    return new ChildSpawnError(`cannot execute ${found}: its #! interpreter or dynamic loader was not found`, "not_executable", errno, { cause });
  }
  if (errno === "EACCES" || errno === "EISDIR" || errno === "ENOEXEC") {
    const what = found !== undefined && isDirectory(found) ? "is a directory" : "is not executable (chmod +x?)";
    return new ChildSpawnError(`permission denied: ${found ?? file} ${what}`, "not_executable", errno, { cause });
  }
  return new ChildSpawnError(`cannot start ${file}: ${errno ?? String(result.shortMessage ?? "unknown error")}`, "spawn_failed", errno, { cause });
}

/** Where the system would find `file`: a path as given, else the first PATH entry that has it. */
function locate(file: string, path: string | undefined, cwd: string | undefined): string | undefined {
  const candidates = file.includes("/")
    ? [cwd !== undefined && !file.startsWith("/") ? join(cwd, file) : file]
    : (path ?? "").split(delimiter).filter((dir) => dir !== "").map((dir) => join(dir, file));
  return candidates.find((candidate) => {
    try {
      statSync(candidate);
      return true;
    } catch {
      return false;
    }
  });
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}
