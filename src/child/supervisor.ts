import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { basename } from "node:path";
import { Duplex } from "node:stream";
import type { ChildEvent } from "./events.js";
import { groupHasLiveMembers, killGroup, signalNumber } from "./process-group.js";
import { GuardUnavailableError, sharedGuard, type Guard } from "./guard.js";
import { ChildSpawnError, preflight } from "./preflight.js";

// Kept here too for importers of the supervisor; the CLI checks a command through preflight.js, which
// does not load node:child_process (a --no-wait run that finds the lease taken never spawns).
export { ChildSpawnError, checkCommand, type SpawnFailure } from "./preflight.js";

/**
 * Runs the guarded command in its own process group and stops that whole group on request.
 *
 * The child inherits our stdio (it owns stdout; our logs go to stderr) and gets exactly the
 * environment passed in. `detached: true` makes it a session and group leader (setsid), so its pid is
 * its group id and every signal we send reaches its shell, wrappers and grandchildren too. A side
 * effect: it has no controlling terminal, so a terminal's Ctrl-C reaches only leader-run, which
 * forwards it (see signals.ts); the child never gets it twice.
 *
 * The command starts behind a gate: `/bin/sh` waits on a pipe (fd 3) and execs the command only after
 * its group is acknowledged by the guard (guard.ts). Spawning takes milliseconds (fork, setsid, exec), and a
 * SIGKILL of leader-run inside that window would otherwise leave a child nobody knows about: running
 * unguarded while the lease expires and a standby starts. With the gate, a leader-run that dies before
 * registering closes the pipe, and the gate exits without ever running the command.
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
  /**
   * The dead-man's switch; default: the process-wide one. The command starts only once it has
   * acknowledged the group (else `GuardUnavailableError`). `false` disables it (tests only).
   */
  guard?: Guard | false;
  /**
   * Checked once more just before the gate opens: false means leadership ended (or its deadline passed)
   * while the child was being spawned, and the command is not started at all.
   */
  mayStart?: () => boolean;
  /**
   * Awaited after the guard acknowledged the group and before the last look (`mayStart`) and the gate:
   * the CLI names the guard and the group in the lease record here, so a standby on this host that
   * finds leader-run dead still waits for whatever is stopping the group (a guard replaced at the last
   * moment included). Errors are the caller's to handle; a rejection fails closed like a dead guard.
   */
  beforeGate?: (pgid: number) => Promise<void>;
  /**
   * Variables known only when the gate opens (the fencing token): sent through the gate's pipe and
   * exported by it just before the command runs, so a gate spawned ahead of time carries them too.
   * Names must be identifiers; values must not contain a newline or NUL.
   */
  termEnv?: Record<string, string>;
  /**
   * A gate spawned ahead of time by `prepareGate` with the same command, environment, directory and
   * kill signal: used instead of spawning one, which takes the fork of this (large) process off the
   * path between acquiring the lease and the command running. One that died or does not match is
   * discarded and a fresh gate spawned.
   */
  prepared?: PreparedGate;
}

/** What a gate is spawned for: a prepared gate is used only for exactly this. */
export type GateOptions = Pick<StartChildOptions, "command" | "shell" | "env" | "killSignal" | "cwd">;

/** A start gate spawned ahead of time (see `prepareGate`); waits, harmless, until used or discarded. */
export interface PreparedGate {
  readonly pid: number;
  /** Still waiting to be opened: not used, not discarded, not exited. */
  readonly waiting: boolean;
  /** Resolves once the gate's process exited (also after it was used: then the command's). */
  readonly exited: Promise<void>;
  /** Kills it (its whole group) and resolves once it was reaped. Idempotent; a used gate is left alone. */
  discard(): Promise<void>;
}

export interface StopOptions {
  /**
   * The first signal; default the handle's `killSignal`. `null` sends none and only waits the grace
   * before SIGKILL: for a stop started by a signal that was already forwarded to the group.
   */
  firstSignal?: NodeJS.Signals | null;
  /**
   * The grace before SIGKILL; default the handle's `killGraceMs`. A stop that starts late passes the
   * time still safe; 0 or less sends SIGKILL at once.
   */
  graceMs?: number;
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

const SHELL = "/bin/sh";
const ENV = "/usr/bin/env";
/** $0 of the gate, so a shell error names us. */
const GATE_NAME = "leader-run";
/**
 * The gate's wait: `NAME=value` lines (the term's variables, exported) until "go"; EOF or anything
 * else ends it without running the command.
 */
const GATE_READ =
  'while :; do IFS= read -r _lr_gate <&3 || exit 125; case $_lr_gate in go) break ;; [A-Za-z_]*=*) export "$_lr_gate" ;; *) exit 125 ;; esac; done; exec 3<&-; ';
/** The gate's own shell variable: given in the environment, it is restored through env(1). */
const GATE_VAR = "_lr_gate";
/**
 * What a shell adds to the environment it passes on, even through `exec`: dash and bash set PWD, bash
 * SHLVL and `_`. The gate removes each that was not given, through env(1).
 */
const SHELL_ADDED = ["PWD", "OLDPWD", "SHLVL", "_"];
/**
 * What a shell rewrites or drops when it was given: the above, an inherited IFS or OPTIND (reset),
 * dash's PPID, and bash's own variables and prompts (bash is /bin/sh on RHEL, Fedora, Arch). The gate
 * passes each back through env(1), so the command sees exactly the environment it was given.
 */
const SHELL_TOUCHED = new Set([
  ...SHELL_ADDED,
  ...["IFS", "OPTIND", "OPTERR", "PPID", "LINENO", "PS1", "PS2", "PS4", "POSIXLY_CORRECT", "SHELLOPTS", "BASHOPTS"],
  ...["BASH", "BASH_VERSION", "BASHPID", "BASH_ARGV0", "BASH_COMMAND", "RANDOM", "SRANDOM", "HISTCMD"],
  ...["EPOCHSECONDS", "EPOCHREALTIME", "COMP_WORDBREAKS"],
]);
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
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
  try {
    return await startThroughGate(options);
  } catch (error) {
    // A start that failed before taking its prepared gate (the command became unrunnable since it was
    // prepared, the guard could not start): an idle gate left behind keeps our event loop, and so
    // leader-run, alive for good, and it exits only when its pipe closes. A used gate is left alone.
    await options.prepared?.discard();
    throw error;
  }
}

async function startThroughGate(options: StartChildOptions): Promise<ChildHandle> {
  const [first] = options.command;
  if (first === undefined) throw new TypeError("startChild: command must not be empty");
  signalNumber(options.killSignal); // RangeError now rather than at stop time
  const argv = options.shell ? [SHELL, "-c", options.command.join(" ")] : options.command;
  // The gate cannot report why an exec failed the way a spawn error can, so look first: the usual
  // mistakes (a typo, a missing chmod +x, a script's missing interpreter) get their one-line error here.
  if (!options.shell) {
    const problem = preflight(first, options.env.PATH, options.cwd);
    if (problem !== undefined) throw problem;
  }
  const termLines = gateLines(options.termEnv);
  const guard = options.guard === false ? undefined : (options.guard ?? sharedGuard());
  // The guard must exist before the child does, so no moment exists in which our death orphans it.
  // The setpriv probe runs meanwhile (or is already done, see prepareStart): a blocking spawnSync here
  // stopped the event loop for its whole run, after the guard's spawn, on every uncontended start.
  await Promise.all([guard?.start(), prepareStart()]);

  const gate = options.prepared instanceof Gate ? options.prepared.take(gateKey(options)) : undefined;
  if (gate === undefined) await options.prepared?.discard();
  const { child, exited, pid } = gate ?? (await spawnGate(argv, options));
  try {
    await guard?.watch(pid, options.killSignal, options.killGraceMs);
  } catch (error) {
    // Fail-closed: the gate has not opened, so the command never ran.
    killGroup(pid, "SIGKILL");
    await exited;
    guard?.unwatch(pid);
    throw error instanceof GuardUnavailableError ? error : new GuardUnavailableError(String(error), { cause: error });
  }
  if (guard !== undefined) options.log?.({ type: "guard_armed", pgid: pid });
  if (options.beforeGate !== undefined) {
    try {
      await options.beforeGate(pid);
    } catch (error) {
      killGroup(pid, "SIGKILL");
      await exited;
      guard?.unwatch(pid);
      throw error;
    }
  }
  // Only now may the command run: from here on the guard stops its group by the deadline, or at once
  // if we die.
  const pipe: unknown = child.stdio[3];
  if (!(pipe instanceof Duplex)) {
    killGroup(pid, "SIGKILL");
    throw new Error("startChild: the gate pipe to the child is missing");
  }
  pipe.on("error", () => {
    // EPIPE: the gate already ended (killed by a signal meant for the group); its exit is reported.
  });
  // The last look before the command exists: spawning, loading and the guard's round trip take time,
  // and a pause in that window (SIGSTOP, a VM freeze) may have outlived our lease. Then the command
  // must never run; its gate is killed instead of opened, and the handle reports that exit.
  if (options.mayStart !== undefined && !options.mayStart()) {
    options.log?.({ type: "killing", pgid: pid, signal: "SIGKILL", reason: "leadership ended before the command could start", graceMs: 0, escalation: true });
    killGroup(pid, "SIGKILL");
    return new Supervised(pid, exited, options, guard);
  }
  pipe.end(`${termLines}go\n`);
  return new Supervised(pid, exited, options, guard);
}

interface SpawnedGate {
  child: ChildProcess;
  exited: Promise<Outcome>;
  pid: number;
}

/** Spawns the gate for `argv`. Rejects with `ChildSpawnError` when it cannot be started. */
async function spawnGate(argv: string[], options: GateOptions): Promise<SpawnedGate> {
  // Plain node:child_process rather than a wrapper library: it is loaded already, while execa cost
  // 140-190 ms and 16 MiB RSS of start-up (docs/performance.md). We stop the whole group ourselves.
  let child: ChildProcess;
  // With setpriv, it runs first and execs the gate's shell: its exec is done while the guard is asked,
  // not after the gate opens, where every exec delays the command.
  const [gateFile, gateArgs] = gateCommand(argv, options.env, options.killSignal, options.cwd);
  try {
    child = spawn(gateFile, gateArgs, {
      stdio: ["inherit", "inherit", "inherit", "pipe"],
      detached: true,
      env: options.env,
      cwd: options.cwd,
    });
  } catch (error) {
    // Synchronous failures (a bad cwd type, an env value with a NUL byte) are spawn failures too.
    throw spawnError(error, gateFile);
  }
  const exited = childExit(child);
  const pid = child.pid;
  if (pid === undefined) {
    // libuv reports a failed fork/exec as an 'error' event on the next tick, with no pid.
    const outcome = await exited;
    throw spawnError(outcome.error, gateFile);
  }
  return { child, exited, pid };
}

function gateKey(options: GateOptions): string {
  return JSON.stringify([options.command, options.shell, options.env, options.killSignal, options.cwd ?? null]);
}

/** The term's variables as the gate reads them; checked here, since the gate cannot report why. */
function gateLines(vars: Record<string, string> | undefined): string {
  let lines = "";
  for (const [name, value] of Object.entries(vars ?? {})) {
    if (!IDENTIFIER.test(name)) throw new TypeError(`startChild: termEnv name ${JSON.stringify(name)} is not an identifier`);
    if (/[\n\0]/.test(value)) throw new TypeError(`startChild: termEnv ${name} must not contain a newline or NUL`);
    lines += `${name}=${value}\n`;
  }
  return lines;
}

/**
 * Whether the gate process still runs: killed a moment ago, it is a zombie until our event loop reaps
 * it, and a start through it would report its death as the command's exit.
 */
function waiting(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X" && state !== "x";
  } catch (error) {
    // No /proc (or not readable): kill(0) is what can be told.
    if ((error as NodeJS.ErrnoException).code === "ENOENT" && existsSync("/proc/self/stat")) return false;
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

class Gate implements PreparedGate {
  private used = false;
  private discarding: Promise<void> | undefined;
  private ended = false;

  constructor(
    private readonly spawned: SpawnedGate,
    private readonly key: string,
  ) {
    void spawned.exited.then(() => (this.ended = true));
  }

  get pid(): number {
    return this.spawned.pid;
  }

  get waiting(): boolean {
    return !this.used && this.discarding === undefined && !this.ended;
  }

  get exited(): Promise<void> {
    return this.spawned.exited.then(() => undefined);
  }

  /** The gate, if it still waits and was prepared for exactly `key`; it is then the caller's. */
  take(key: string): SpawnedGate | undefined {
    if (this.used || this.discarding !== undefined || this.ended || key !== this.key) return undefined;
    const { child } = this.spawned;
    if (child.exitCode !== null || child.signalCode !== null || !waiting(this.spawned.pid)) return undefined;
    this.used = true;
    return this.spawned;
  }

  discard(): Promise<void> {
    if (this.used) return Promise.resolve();
    this.discarding ??= (async () => {
      if (!this.ended) killGroup(this.spawned.pid, "SIGKILL");
      await this.spawned.exited;
    })();
    return this.discarding;
  }
}

/**
 * Spawns the start gate for a command ahead of time (a standby waiting for the lease), so that
 * acquiring it is followed by one message to the guard and one to the gate instead of a fork of this
 * process. The gate only waits: it runs nothing until `startChild` opens it, which happens, as for a
 * gate spawned there, only after the guard acknowledged its group with the term's deadline. It exits
 * without running anything when its pipe closes (our death, or `discard`), and with setpriv the
 * kernel also signals it when we die. Undefined when the command would fail the pre-check (startChild
 * then reports it) or the spawn fails.
 */
export async function prepareGate(options: GateOptions): Promise<PreparedGate | undefined> {
  const [first] = options.command;
  if (first === undefined) return undefined;
  const argv = options.shell ? [SHELL, "-c", options.command.join(" ")] : options.command;
  if (!options.shell && preflight(first, options.env.PATH, options.cwd) !== undefined) return undefined;
  try {
    return new Gate(await spawnGate(argv, options), gateKey(options));
  } catch {
    return undefined;
  }
}

interface Outcome {
  exit: ChildExit;
  /** Set when the process could not be spawned (then there is no pid and no exit status). */
  error?: unknown;
}

/**
 * Resolves once the process was reaped ('exit'), or failed to spawn ('error' without a pid). Never
 * rejects. 'exit' rather than 'close': the child's stdio is inherited, and the gate pipe is ours to
 * end, so nothing else is worth waiting for and the exit is seen as soon as the kernel reports it.
 */
function childExit(child: ChildProcess): Promise<Outcome> {
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ exit: toChildExit(code, signal) }));
    child.once("error", (error) => {
      // After a successful spawn, 'error' means only that a signal could not be delivered; the exit
      // still comes. Without a pid nothing ran and no exit will follow.
      if (child.pid === undefined) resolve({ exit: { code: null, signal: null, exitCode: 1 }, error });
    });
  });
}

/**
 * The gate as [file, args]: `sh -c` waits for "go" on fd 3, then execs `argv` with `env` as given;
 * with setpriv, `setpriv --pdeathsig <sig> -- sh -c …`. The parent death signal survives the execs,
 * so it covers the command exactly as before, and also a gate that never opened.
 */
function gateCommand(argv: string[], env: Record<string, string>, killSignal: NodeJS.Signals, cwd: string | undefined): [string, string[]] {
  const script = ["-c", ...gateScript(argv, env, cwd)];
  if (!pdeathsigAvailable()) return [SHELL, script];
  return [SETPRIV, ["--pdeathsig", killSignal.replace(/^SIG/, ""), "--", SHELL, ...script]];
}

/** The `sh -c` script and its arguments: wait for "go" on fd 3, then exec `argv` with `env` as given. */
function gateScript(argv: string[], env: Record<string, string>, cwd: string | undefined): string[] {
  const [file = ""] = argv;
  // Where /bin/sh is dash (Debian, Ubuntu) and it would change nothing, the shell's own exec: one exec
  // fewer between the gate opening and the command (2-3 ms here, on every start and hand-over).
  const kept = dashKeeps(env, cwd);
  if (kept !== undefined) return [`${GATE_READ}${kept}exec "$@"`, GATE_NAME, ...argv];
  // env(1) would read a command word containing "=" as an assignment; such a command (and a system
  // without env) runs through the shell's exec, with the shell's few environment changes.
  if (file.includes("=") || !existsSync(ENV)) return [`${GATE_READ}exec "$@"`, GATE_NAME, ...argv];
  const unset = SHELL_ADDED.filter((name) => env[name] === undefined).flatMap((name) => ["-u", name]);
  // A shell also drops variables whose names are not identifiers ("com.example.x"), so those come back
  // through env's arguments too.
  const restored = Object.keys(env).filter((name) => SHELL_TOUCHED.has(name) || name === GATE_VAR || !IDENTIFIER.test(name));
  const restore = restored.map((name) => `${name}=${env[name] ?? ""}`);
  return [`${GATE_READ}exec ${ENV} "$@"`, GATE_NAME, ...unset, "--", ...restore, ...argv];
}

/** What dash (0.5) rewrites when given: IFS and OPTIND are reset, PPID set to its own parent. */
const DASH_REWRITES = new Set(["IFS", "OPTIND", "PPID"]);
let shellIsDash: boolean | undefined;

/**
 * With dash as /bin/sh, the part of the gate script that leaves `env` exactly as given ("" or "unset
 * PWD; "), or undefined when env(1) must restore it. dash passes on every variable it was given except
 * those in DASH_REWRITES and names that are not identifiers (dropped); it keeps a given PWD verbatim
 * when it is absolute and names its working directory (the same device and inode as "."), replaces it
 * otherwise, and adds one when none was given, which `unset PWD` takes back.
 */
function dashKeeps(env: Record<string, string>, cwd: string | undefined): string | undefined {
  if (shellIsDash === undefined) {
    try {
      shellIsDash = basename(realpathSync(SHELL)) === "dash";
    } catch {
      shellIsDash = false;
    }
  }
  if (!shellIsDash) return undefined;
  for (const name of Object.keys(env)) if (DASH_REWRITES.has(name) || name === GATE_VAR || !IDENTIFIER.test(name)) return undefined;
  const pwd = env.PWD;
  if (pwd === undefined) return "unset PWD; ";
  if (!pwd.startsWith("/")) return undefined;
  try {
    const given = statSync(pwd);
    const here = statSync(cwd ?? process.cwd());
    return given.dev === here.dev && given.ino === here.ino ? "" : undefined;
  } catch {
    return undefined;
  }
}

const SETPRIV = "/usr/bin/setpriv";
let pdeathsigSupported: boolean | undefined;
let pdeathsigProbe: Promise<void> | undefined;

/**
 * Does the one-time work of the first `startChild` ahead of time, in the background: the setpriv probe
 * otherwise blocks the event loop (spawnSync) for 10-30 ms between acquiring the lease and starting the
 * child. A standby calls it while it waits; `startChild` probes synchronously if this has not finished.
 */
export function prepareStart(): Promise<void> {
  if (pdeathsigSupported !== undefined) return Promise.resolve();
  pdeathsigProbe ??= new Promise<void>((resolve) => {
    if (!existsSync(SETPRIV)) {
      pdeathsigSupported = false;
      resolve();
      return;
    }
    if (setprivTellsPdeathsig(SETPRIV)) {
      pdeathsigSupported = true;
      resolve();
      return;
    }
    let probe: ChildProcess;
    try {
      probe = spawn(SETPRIV, ["--pdeathsig", "TERM", "--", "true"], { stdio: "ignore", timeout: 2000 });
    } catch {
      resolve();
      return;
    }
    probe.once("error", () => resolve());
    probe.once("exit", (code) => {
      // A synchronous probe may have answered meanwhile; both ask the same question.
      pdeathsigSupported ??= code === 0;
      resolve();
    });
    probe.unref();
  });
  return pdeathsigProbe;
}

/**
 * Whether util-linux's setpriv (2.33+) can set the parent death signal: the command then gets its kill
 * signal from the kernel when leader-run dies, even if the guard is killed with it. The parent death
 * signal is tied to the thread that forked the gate, which is Node's main thread (libuv spawns from the
 * loop thread), so it fires when leader-run itself ends. It reaches the group leader only; the guard's
 * timers and SIGKILL remain what stops the rest. Probed once, since older setpriv rejects it.
 */
function pdeathsigAvailable(): boolean {
  pdeathsigSupported ??= existsSync(SETPRIV) && (setprivTellsPdeathsig(SETPRIV) || spawnSync(SETPRIV, ["--pdeathsig", "TERM", "--", "true"], { stdio: "ignore", timeout: 2000 }).status === 0);
  return pdeathsigSupported;
}

/** util-linux's version string, which each of its programs carries for --version. */
const UTIL_LINUX_VERSION = /util-linux (\d+)\.(\d+)/;

/**
 * True when the setpriv binary names itself util-linux 2.33 or later, the release that added
 * --pdeathsig: then it is not run to find out. Running it was a fork of the whole Node process on
 * every start (≈ 15 ms of CPU and wall time before the child, docs/performance.md). Anything else (an
 * older, a patched or a non-util-linux setpriv, an unreadable file) is false and is asked by running
 * it, as before.
 */
export function setprivTellsPdeathsig(file: string): boolean {
  let text: string;
  try {
    // setpriv is about 80 KB; a multi-call binary (BusyBox) may be larger, and is not util-linux.
    if (statSync(file).size > 4 << 20) return false;
    text = readFileSync(file, "latin1");
  } catch {
    return false;
  }
  const m = UTIL_LINUX_VERSION.exec(text);
  if (m === null) return false;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  return major > 2 || (major === 2 && minor >= 33);
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
    exited: Promise<Outcome>,
    private readonly options: StartChildOptions,
    private readonly guard: Guard | undefined,
  ) {
    this.pgid = pid;
    options.log?.({ type: "child_started", pid, pgid: pid, shell: options.shell });
    this.exited = exited.then((outcome) => this.onExit(outcome.exit));
  }

  signal(signal: NodeJS.Signals): boolean {
    if (this.groupGone) return false;
    return killGroup(this.pgid, signal);
  }

  stop(reason: string, options: StopOptions = {}): Promise<StopResult> {
    const graceMs = options.graceMs === undefined ? this.options.killGraceMs : Math.min(this.options.killGraceMs, options.graceMs);
    const first = options.firstSignal === undefined ? this.options.killSignal : options.firstSignal;
    this.stopping ??= this.runStop(reason, graceMs <= 0 ? "SIGKILL" : first, Math.max(0, graceMs));
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

  private async runStop(reason: string, firstSignal: NodeJS.Signals | null, killGraceMs: number): Promise<StopResult> {
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
    if (this.groupGone) return;
    this.groupGone = true;
    this.guard?.unwatch(this.pgid);
    this.options.log?.({ type: "group_gone", pgid: this.pgid });
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

/** /bin/sh (or setpriv before it) could not be started: every command starts through it (the gate above). */
function spawnError(error: unknown, file: string): ChildSpawnError {
  const code: unknown = error instanceof Error ? (error as NodeJS.ErrnoException).code : undefined;
  const errno = typeof code === "string" ? code : undefined;
  const reason = errno === "ENOENT" ? "not_found" : errno === "EACCES" ? "not_executable" : "spawn_failed";
  const fix = file === SHELL ? "install a POSIX shell" : `check ${file}`;
  return new ChildSpawnError(`cannot run ${file}, which starts every command (${errno ?? "unknown error"}): ${fix}`, reason, errno, {
    cause: error,
  });
}
