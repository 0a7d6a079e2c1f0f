import type { ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ChildEvent } from "./events.js";
import { childProcess } from "../builtin.js";
import { signalNumber } from "./process-group.js";

/**
 * The guard: a dead-man's switch for the child's process group (`guard.sh`, a POSIX sh script in its
 * own session). It holds the group's deadline; every successful acquire or renew extends it, and if
 * the deadline passes without an extension it stops the group by itself: the kill signal, then SIGKILL
 * early enough that the group is gone before any other candidate may take the lease. So a SIGSTOPped
 * leader-run, a stalled event loop, a stderr nobody drains or a hung request change nothing. If
 * leader-run dies (its pipe closes), the guard stops every group at once, SIGKILL after the grace that
 * is still safe.
 *
 * Fail-closed: `watch` resolves only once the guard has acknowledged the group; the supervisor's start
 * gate execs the command only after that, and a guard that cannot be started or does not answer is an
 * error (`GuardUnavailableError`), never a warning.
 *
 * Deadlines are `performance.now()` milliseconds here and absolute CLOCK_BOOTTIME centiseconds
 * (/proc/uptime) on the wire, converted so that the guard fires no later than the true deadline.
 *
 * If the guard dies while groups are watched, it is restarted at once and every group re-registered
 * with its current deadline; the dead guard's leftover timers (its session) are then killed. While
 * that happens the old timers still fire at the old deadline. If no new guard acknowledges within
 * 1 s, `onUnguarded` is called: the owner must stop the child.
 */

/** Where the guard script lives next to this module, in `src/child/` and in `dist/child/`. */
export const GUARD_SCRIPT = fileURLToPath(new URL("./guard.sh", import.meta.url));

/** The shell that runs the guard; LEADER_RUN_GUARD_SHELL overrides it (tests run dash and busybox ash). */
export function guardShell(): string[] {
  const override = process.env.LEADER_RUN_GUARD_SHELL;
  if (override !== undefined && override.trim() !== "") return override.trim().split(/\s+/);
  return ["/bin/sh"];
}

/** The guard could not be started or did not acknowledge: no child may start. Exit code 70. */
export class GuardUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "GuardUnavailableError";
  }
}

/** When the guard acts if no extension arrives: `performance.now()` milliseconds. */
export interface GuardDeadline {
  /** The kill signal goes to the group (with SIGCONT) at this time. */
  signalAt: number;
  /** SIGKILL to the group at this time: before anyone else may take the lease. */
  killAt: number;
}

export interface GuardOptions {
  /** Structured events (`guard_started`, `guard_exited`, `guard_failed`). */
  log?: (event: ChildEvent) => void;
  /**
   * How the guard itself reports on stderr (it cannot use our logger): a text line, a JSON line
   * (`{"time","level":"warn","event":"guard_killing",…,"msg"}`), or nothing.
   */
  stderrFormat?: "text" | "json" | "quiet";
  /** Overrides the script location (tests). */
  script?: string;
  /** Overrides the shell (tests); default `guardShell()`. */
  shell?: string[];
  /** How long an acknowledgement may take. Default 2000 ms. */
  ackTimeoutMs?: number;
  /** A restarted guard did not acknowledge a watched group in time: stop that group's child now. */
  onUnguarded?: (pgid: number, error: GuardUnavailableError) => void;
}

interface Watched {
  signal: NodeJS.Signals;
  graceMs: number;
}

const DEFAULT_ACK_TIMEOUT_MS = 2000;
/** How long a dead guard may stay unreplaced while groups are watched before `onUnguarded`. */
const RESTART_BOUND_MS = 1000;
/** Pause between restart attempts within that bound. */
const RESTART_RETRY_MS = 100;

interface Pending {
  resolve(): void;
  reject(error: GuardUnavailableError): void;
}

/**
 * The offset that maps `performance.now()` ms to CLOCK_BOOTTIME ms, rounded so that a converted
 * deadline is never later than the true one: /proc/uptime truncates (true ≥ shown) and was read at
 * some moment before `after`, so `shown − after` is a lower bound of the true offset.
 */
function bootOffsetMs(): number {
  const text = readFileSync("/proc/uptime", "utf8");
  const after = performance.now();
  const [whole = "", frac = "0"] = (text.split(" ")[0] ?? "").split(".");
  const cs = Number(whole) * 100 + Number(frac.padEnd(2, "0").slice(0, 2));
  if (!Number.isFinite(cs)) throw new GuardUnavailableError(`cannot read the monotonic clock from /proc/uptime ("${text.trim()}")`);
  return cs * 10 - after;
}

/** A `performance.now()` deadline as the guard's centiseconds, never later than the true one. */
export function toBootCentiseconds(ms: number, offsetMs: number = bootOffsetMs()): number {
  return Math.max(1, Math.floor((ms + offsetMs) / 10));
}

export class Guard {
  private proc: ChildProcess | undefined;
  private ready: Promise<void> | undefined;
  private readonly watched = new Map<number, Watched>();
  /** Bumped by `unwatch`: a `watch` that was waiting meanwhile must not put the group back. */
  private readonly unwatches = new Map<number, number>();
  /** Numbers each watch line, so an answer to an earlier one never passes for a later one's. */
  private seq = 0;
  private readonly acks = new Map<string, Pending[]>();
  private rewatching = false;
  private deadline: GuardDeadline | undefined;
  private closed = false;
  private exitedPromise: Promise<void> | undefined;
  private buffered = "";

  constructor(private readonly options: GuardOptions = {}) {}

  /** The guard's pid while it runs. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** The current deadline, if any. */
  get currentDeadline(): GuardDeadline | undefined {
    return this.deadline;
  }

  /**
   * Starts the guard if it is not running and resolves once it answers. Rejects with
   * `GuardUnavailableError` when it cannot be started.
   */
  start(): Promise<void> {
    if (this.closed) return Promise.reject(new GuardUnavailableError("the guard was closed"));
    this.ready ??= this.spawnGuard().catch((error: unknown) => {
      this.ready = undefined;
      this.emit({ type: "guard_failed", error });
      throw error;
    });
    return this.ready;
  }

  /**
   * Guards a group: at the current deadline (see `extend`) it gets `signal`, then SIGKILL; if
   * leader-run dies, `signal` at once and SIGKILL after `graceMs` (or the deadline's killAt, if
   * sooner). Resolves once the guard acknowledged it; rejects with `GuardUnavailableError` otherwise.
   */
  async watch(pgid: number, signal: NodeJS.Signals, graceMs: number): Promise<void> {
    signalNumber(signal);
    const epoch = this.unwatches.get(pgid) ?? 0;
    const unwatched = (): boolean => (this.unwatches.get(pgid) ?? 0) !== epoch;
    await this.start();
    if (unwatched()) throw new GuardUnavailableError(`group ${pgid} was unwatched while its watch waited for the guard`);
    const grace = Math.max(0, Math.round(graceMs));
    const asked = this.proc;
    this.watched.set(pgid, { signal, graceMs: grace });
    try {
      await this.ask(pgid);
    } catch (error) {
      // A guard started ahead of time (a standby's, see ChildControl.prepare) may have died unnoticed
      // before it was asked: replace it once and ask again. Still fail-closed: nothing is acknowledged
      // unless a live guard answered, and a second failure is the caller's GuardUnavailableError.
      if (this.closed || asked === undefined || this.proc === asked || !this.watched.has(pgid)) throw error;
      await this.start();
      if (unwatched()) throw new GuardUnavailableError(`group ${pgid} was unwatched while its watch waited for the guard`);
      await this.ask(pgid);
    }
  }

  /** Sends the group's watch line with the current deadline; resolves once the guard acknowledged it. */
  private ask(pgid: number): Promise<void> {
    const seq = ++this.seq;
    return this.request(`ack ${pgid} ${seq}`, `${this.watchLine(pgid)} ${seq}`);
  }

  /** A new deadline for every watched group (and for groups watched later). */
  extend(deadline: GuardDeadline): void {
    this.deadline = deadline;
    if (this.proc === undefined || this.watched.size === 0) return;
    const offset = bootOffsetMs();
    this.write(`extend ${toBootCentiseconds(deadline.signalAt, offset)} ${toBootCentiseconds(deadline.killAt, offset)}`);
  }

  /** The group is gone (reaped by us): its timers are cancelled, so a recycled pid is never killed. */
  unwatch(pgid: number): void {
    this.unwatches.set(pgid, (this.unwatches.get(pgid) ?? 0) + 1);
    if (!this.watched.delete(pgid)) return;
    this.write(`unwatch ${pgid}`);
  }

  /** Groups currently watched. */
  watching(): number[] {
    return [...this.watched.keys()];
  }

  /**
   * Closes the pipe and waits for the guard to exit. Groups still watched are stopped exactly as if
   * leader-run had died, so call it after every child was stopped.
   */
  async close(): Promise<void> {
    this.closed = true;
    const proc = this.proc;
    if (proc === undefined) return;
    proc.ref();
    proc.stdin?.end();
    await this.exitedPromise;
  }

  private watchLine(pgid: number): string {
    const w = this.watched.get(pgid);
    if (w === undefined) return "";
    const graceCs = Math.ceil(w.graceMs / 10);
    const sig = w.signal.replace(/^SIG/, "");
    if (this.deadline === undefined) return `watch ${pgid} ${sig} ${graceCs} 0 0`;
    const offset = bootOffsetMs();
    return `watch ${pgid} ${sig} ${graceCs} ${toBootCentiseconds(this.deadline.signalAt, offset)} ${toBootCentiseconds(this.deadline.killAt, offset)}`;
  }

  private async spawnGuard(): Promise<void> {
    const script = this.options.script ?? GUARD_SCRIPT;
    if (!existsSync(script)) {
      throw new GuardUnavailableError(`the guard script is missing at ${script}: the build must copy src/child/guard.sh to dist/child/ and dist/bin/`);
    }
    if (!existsSync("/proc/uptime")) throw new GuardUnavailableError("the guard needs /proc/uptime (Linux) for its monotonic clock");
    const [shell = "/bin/sh", ...shellArgs] = this.options.shell ?? guardShell();
    let proc: ChildProcess;
    try {
      proc = childProcess().spawn(shell, [...shellArgs, script, String(process.pid), this.options.stderrFormat ?? "text"], {
        stdio: ["pipe", "pipe", "inherit"],
        // Its own session: a Ctrl-Z or Ctrl-C to leader-run's terminal group never reaches it.
        detached: true,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" },
      });
    } catch (error) {
      throw new GuardUnavailableError(`cannot start the guard (${shell}): ${describe(error)}`, { cause: error });
    }
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once("spawn", resolve);
      proc.once("error", (error) => reject(new GuardUnavailableError(`cannot start the guard (${shell}): ${describe(error)}`, { cause: error })));
    });
    await spawned;
    this.proc = proc;
    this.buffered = "";
    proc.stdin?.on("error", () => {
      // EPIPE after the guard died: the exit handler below restarts it.
    });
    proc.stdout?.setEncoding("utf8");
    proc.stdout?.on("data", (chunk: string) => this.onOutput(chunk));
    this.exitedPromise = new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        if (this.proc === proc) {
          this.proc = undefined;
          this.ready = undefined;
          // Nothing this guard was asked will be answered now.
          this.failPending(new GuardUnavailableError(`the guard (pid ${proc.pid ?? "?"}) exited (${signal ?? `code ${code ?? "?"}`})`));
        }
        if (!this.closed) {
          this.emit({ type: "guard_exited", pid: proc.pid ?? 0, code, signal });
          if (this.watched.size > 0 && !this.rewatching) void this.rewatch(proc.pid);
        }
        resolve();
      });
    });
    proc.unref();
    (proc.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null)?.unref?.();
    (proc.stdout as (NodeJS.ReadableStream & { unref?: () => void }) | null)?.unref?.();
    const token = `${proc.pid ?? 0}`;
    await this.request(`pong ${token}`, `ping ${token}`);
    this.emit({ type: "guard_started", pid: proc.pid ?? 0, shell });
  }

  /**
   * A guard died under watched groups: start a new one and re-register them, retrying for at most
   * RESTART_BOUND_MS; then kill the dead guards' leftover timers. Until then those timers still fire at
   * the old deadline. If no guard answers in time, `onUnguarded` for every group.
   */
  private async rewatch(firstDeadPid: number | undefined): Promise<void> {
    this.rewatching = true;
    const dead = new Set<number>(firstDeadPid === undefined ? [] : [firstDeadPid]);
    const giveUpAt = performance.now() + RESTART_BOUND_MS;
    let failure: GuardUnavailableError | undefined;
    try {
      while (!this.closed && this.watched.size > 0) {
        try {
          await this.start();
          for (const pgid of [...this.watched.keys()]) await this.ask(pgid);
          failure = undefined;
          break;
        } catch (error) {
          failure = error instanceof GuardUnavailableError ? error : new GuardUnavailableError(describe(error), { cause: error });
          const pid = this.proc?.pid;
          if (pid !== undefined) dead.add(pid);
          this.proc?.kill("SIGKILL");
          if (performance.now() + RESTART_RETRY_MS > giveUpAt) break;
          await new Promise((resolve) => setTimeout(resolve, RESTART_RETRY_MS));
        }
      }
    } finally {
      this.rewatching = false;
    }
    if (failure !== undefined) {
      for (const pgid of this.watched.keys()) this.options.onUnguarded?.(pgid, failure);
      return;
    }
    // The dead guards' timers live on in their sessions and would fire at the old deadline.
    for (const pid of dead) {
      if (pid === this.proc?.pid) continue;
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }

  /** Writes `line` and resolves when the guard answered `expect`; rejects after the ack timeout. */
  private request(expect: string, line: string): Promise<void> {
    const timeoutMs = this.options.ackTimeoutMs ?? DEFAULT_ACK_TIMEOUT_MS;
    return new Promise<void>((resolve, reject) => {
      const remove = (): void => {
        const current = this.acks.get(expect);
        if (current === undefined) return;
        const rest = current.filter((p) => p !== pending);
        if (rest.length === 0) this.acks.delete(expect);
        else this.acks.set(expect, rest);
      };
      const timer = setTimeout(() => {
        remove();
        reject(new GuardUnavailableError(`the guard (pid ${this.proc?.pid ?? "none"}) did not answer "${line}" within ${timeoutMs}ms`));
      }, timeoutMs);
      const pending: Pending = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      const list = this.acks.get(expect) ?? [];
      list.push(pending);
      this.acks.set(expect, list);
      if (!this.write(line)) {
        remove();
        pending.reject(new GuardUnavailableError("the guard is not running"));
      }
    });
  }

  private failPending(error: GuardUnavailableError): void {
    const all = [...this.acks.values()].flat();
    this.acks.clear();
    for (const p of all) p.reject(error);
  }

  private onOutput(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf("\n")) >= 0) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      const waiting = this.acks.get(line);
      if (waiting === undefined) continue;
      this.acks.delete(line);
      for (const p of waiting) p.resolve();
    }
  }

  /** Hands the line to the guard's pipe; false when there is no guard to tell. */
  private write(line: string): boolean {
    const stdin = this.proc?.stdin;
    if (stdin === null || stdin === undefined || stdin.destroyed) return false;
    stdin.write(`${line}\n`);
    return true;
  }

  private emit(event: ChildEvent): void {
    this.options.log?.(event);
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

let shared: Guard | undefined;

/** The process-wide guard `startChild` uses unless given one. */
export function sharedGuard(): Guard {
  shared ??= new Guard();
  return shared;
}
