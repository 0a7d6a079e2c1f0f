import { setTimeout as delay } from "node:timers/promises";
import { LeadershipEndedError } from "../election/elector.js";
import type { ResourceLock } from "../election/lock.js";
import type { ChildEvent } from "../child/events.js";
import { RestartPolicy } from "../child/restart.js";
import type { ChildExit, ChildHandle, ChildSpawnError } from "../child/supervisor.js";
import { Watchdog } from "../child/watchdog.js";
import type { Logger } from "./log.js";
import type { RunOptions } from "./options.js";
import type { HttpHooks } from "./run-http.js";
import { forwardChildSignals } from "./run-signals.js";

/** Backends that can name the child's process group in their record (the file lock does). */
interface ProcessGuardingLock extends ResourceLock {
  setGuardedProcessGroup(pgid: number | undefined, options?: { watchdogPid?: number; signal?: AbortSignal }): Promise<boolean>;
}

function guardsProcesses(lock: ResourceLock): lock is ProcessGuardingLock {
  return typeof (lock as Partial<ProcessGuardingLock>).setGuardedProcessGroup === "function";
}

/** How the child side ends a campaign. */
export type ChildOutcome = { kind: "child_done"; exit: ChildExit } | { kind: "internal"; error: unknown };

/** What child control needs from the campaign around it. */
export interface ChildControlHost {
  /** The current term (fencing token), for the child's environment and logs. */
  term(): number | undefined;
  /** Ends the campaign. */
  cancel(outcome: ChildOutcome): void;
}

export type SupervisorLoader = () => Promise<typeof import("../child/supervisor.js")>;

/** Exit code for a spawn failure, as shells report them. */
function spawnFailureExit(error: ChildSpawnError): ChildExit {
  const code = error.reason === "not_found" ? 127 : 126;
  return { code, signal: null, exitCode: code };
}

/** Signals that mean the program crashed rather than was stopped. */
const CRASH_SIGNALS = new Map<string, number>([["SIGSEGV", 11], ["SIGBUS", 7], ["SIGILL", 4], ["SIGFPE", 8], ["SIGABRT", 6], ["SIGSYS", 31], ["SIGTRAP", 5]]);

/**
 * The crash signal behind an exit, also when a shell in between reported it as 128+N (`sh -c` runs
 * the program as its child and exits 139 after a SIGSEGV).
 */
export function crashSignal(signal: string | null | undefined, exitCode: number | null | undefined): string | undefined {
  if (signal && CRASH_SIGNALS.has(signal)) return signal;
  for (const [name, n] of CRASH_SIGNALS) if (exitCode === 128 + n) return name;
  return undefined;
}

export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Child control for one leader-run: starts the child once we lead, restarts it by --restart, stops
 * (and reaps) its whole group when leadership ends or a stop signal arrives, and keeps the orphan
 * guard informed.
 */
export class ChildControl {
  private current: ChildHandle | undefined;
  private stopSignal: NodeJS.Signals | undefined;
  /** When the command first started (performance.now()), for --min-hold. */
  private firstStartedAt: number | undefined;
  private readonly restart: RestartPolicy;
  /** One orphan guard per leader-run, shared by every restart of the child. */
  private readonly watchdog: Watchdog;

  constructor(
    private readonly options: RunOptions,
    private readonly log: Logger,
    private readonly lock: ResourceLock,
    private readonly http: HttpHooks | undefined,
    private readonly supervisor: SupervisorLoader,
    private readonly host: ChildControlHost,
  ) {
    this.watchdog = new Watchdog({
      log: (event) => this.onChildEvent(event),
      stderrFormat: options.logLevel === "error" ? "quiet" : options.logFormat,
    });
    this.restart = new RestartPolicy({ mode: options.restart, initialDelayMs: options.restartDelayMs });
  }

  /** Whether a child runs now. */
  get running(): boolean {
    return this.current !== undefined;
  }

  /** A stop signal arrived while leading with no child running: start no (further) child. */
  requestStop(signal: NodeJS.Signals): void {
    this.stopSignal ??= signal;
  }

  async close(): Promise<void> {
    await this.watchdog.close();
  }

  /**
   * onStartedLeading. A bug in here must not leave us leading with no child: it ends the campaign
   * (exit 70) after whatever child was started has been stopped.
   */
  async lead(leading: AbortSignal): Promise<void> {
    try {
      await this.superviseChild(leading);
    } catch (error) {
      this.log.error("internal_error", { error: describeError(error) }, "internal error while supervising the child; this is a bug in leader-run");
      // The lease is released once this returns, so a child must be gone first.
      const stopped = await this.current?.stop("internal error");
      this.host.cancel({ kind: "internal", error });
      if (stopped && !stopped.groupGone) return new Promise<void>(() => undefined);
    }
  }

  private async superviseChild(leading: AbortSignal): Promise<void> {
    const term = this.host.term() ?? 0;
    while (!leading.aborted) {
      if (this.stopSignal !== undefined) return;
      const { startChild, ChildSpawnError } = await this.supervisor();
      // Name the watchdog in the record before the child exists: if we die between spawning the child and
      // recording its group, a standby on this host still waits for the watchdog that is killing it.
      this.watchdog.start();
      if (guardsProcesses(this.lock) && this.watchdog.pid !== undefined) {
        await this.lock.setGuardedProcessGroup(undefined, { watchdogPid: this.watchdog.pid, signal: leading });
      }
      if (leading.aborted) return;
      let child: ChildHandle;
      try {
        child = await startChild({
          command: this.options.command,
          shell: this.options.shell,
          env: this.childEnv(term),
          killSignal: this.options.killSignal,
          killGraceMs: this.options.killGraceMs,
          log: (event) => this.onChildEvent(event),
          watchdog: this.watchdog,
        });
      } catch (error) {
        if (!(error instanceof ChildSpawnError)) throw error;
        this.log.error("child_failed", {}, error.message);
        this.host.cancel({ kind: "child_done", exit: spawnFailureExit(error) });
        return;
      }
      this.current = child;
      this.firstStartedAt ??= child.startedAt;
      if (guardsProcesses(this.lock)) void this.lock.setGuardedProcessGroup(child.pgid, { watchdogPid: this.watchdog.pid });
      this.http?.childStarted();

      const disposeSignals = forwardChildSignals(child, this.log, this.options.killGraceMs, (sig) => {
        if (this.stopSignal !== undefined) return false;
        this.stopSignal = sig;
        return true;
      });
      const onLeadershipEnd = (): void => {
        const reason = leading.reason instanceof LeadershipEndedError ? leading.reason.reason : "cancelled";
        void child.stop(`leadership ended (${reason})`);
      };
      leading.addEventListener("abort", onLeadershipEnd, { once: true });
      // Leadership may have ended (or a stop signal arrived) while the child was being spawned.
      if (leading.aborted) onLeadershipEnd();

      const exit = await child.exited;
      // Also after a clean exit: stragglers of the group must be gone before the lease can be released.
      const stopped = await child.stop(leading.aborted ? "leadership ended" : "child exited");
      leading.removeEventListener("abort", onLeadershipEnd);
      disposeSignals();
      this.current = undefined;
      this.http?.childExited(exit.exitCode);
      if (!stopped.groupGone) {
        // Something in the group survived SIGKILL: never settle, so the elector leaves the lease to expire.
        this.log.error("group_survived", { pgid: child.pgid }, "processes of the child's group survived SIGKILL; the lease will not be released");
        // After a lost lease the exit stays 76; otherwise end the campaign with the child's status.
        if (!leading.aborted) this.host.cancel({ kind: "child_done", exit });
        return new Promise<void>(() => undefined);
      }
      if (guardsProcesses(this.lock)) void this.lock.setGuardedProcessGroup(undefined);
      if (leading.aborted) return;

      const ranForMs = performance.now() - child.startedAt;
      const restartIn = this.stopSignal === undefined ? this.restart.nextDelay(exit, ranForMs) : undefined;
      if (restartIn === undefined) {
        this.firstStartedAt ??= child.startedAt;
        await this.holdAfterExit(this.firstStartedAt, leading);
        this.host.cancel({ kind: "child_done", exit });
        return;
      }
      this.log.info("restarting", { exit_code: exit.exitCode, delay_ms: restartIn }, `child exited with ${exit.exitCode}; restarting in ${restartIn}ms (--restart ${this.options.restart})`);
      this.http?.childRestarted();
      try {
        await delay(restartIn, undefined, { signal: leading });
      } catch {
        return;
      }
    }
  }

  /**
   * --min-hold: keep the lease (running nothing) until that long after the command first started, so a
   * host whose cron fires a little later finds it held and skips the slot instead of running the job a
   * second time. A stop signal or the end of leadership ends the wait early.
   */
  private async holdAfterExit(startedAt: number, leading: AbortSignal): Promise<void> {
    const left = this.options.minHoldMs - (performance.now() - startedAt);
    if (left <= 0 || leading.aborted || this.stopSignal !== undefined) return;
    this.log.info("holding", { hold_ms: Math.ceil(left) }, `the command is done; holding the lease for ${Math.ceil(left)}ms more (--min-hold)`);
    try {
      await delay(left, undefined, { signal: leading });
    } catch {
      // Leadership ended or a stop signal arrived: stop holding.
    }
  }

  private onChildEvent(event: ChildEvent): void {
    switch (event.type) {
      case "child_started":
        this.log.info("child_started", { pid: event.pid, term: this.host.term() });
        return;
      case "child_exited": {
        const fields = { pid: event.pid, exit_code: event.exitCode, signal: event.signal ?? undefined };
        const crash = crashSignal(event.signal, event.exitCode);
        // A crash is worth a warning (it shows under --quiet); an ordinary exit or our own stop is not.
        if (crash !== undefined) this.log.warn("child_exited", fields, `the command crashed (${crash})`);
        else this.log.info("child_exited", fields);
        return;
      }
      case "killing":
        this.log.info("killing", { pgid: event.pgid, signal: event.signal, reason: event.reason });
        return;
      case "stragglers":
        this.log.warn("stragglers", { pgid: event.pgid }, "the child exited but processes of its group live on; stopping them");
        return;
      case "group_survived":
        this.log.error("group_survived", { pgid: event.pgid, waited_ms: event.waitedMs });
        return;
      case "watchdog_started":
        // A respawned watchdog (someone killed ours) must be the one the record names.
        if (guardsProcesses(this.lock)) void this.lock.setGuardedProcessGroup(this.current?.pgid, { watchdogPid: event.pid });
        this.log.debug("watchdog_started", { pid: event.pid });
        return;
      case "watchdog_failed":
        this.log.warn("watchdog_failed", { error: describeError(event.error) }, "no orphan protection: if leader-run is killed, its child keeps running");
        return;
      default:
        this.log.debug(event.type, {});
    }
  }

  private childEnv(term: number): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value;
    env.LEADER_RUN_NAME = this.options.name;
    env.LEADER_RUN_IDENTITY = this.options.identity;
    env.LEADER_RUN_FENCING_TOKEN = String(term);
    env.LEADER_RUN_LOCK = this.options.lock.redacted;
    return env;
  }
}
