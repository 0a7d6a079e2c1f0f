import { setTimeout as delay } from "node:timers/promises";
import { LeaderElector, LeadershipEndedError } from "../election/elector.js";
import type { ElectionEvent, LostReason } from "../election/events.js";
import { AlreadyExistsError, ConflictError, PermanentLockError, type ResourceLock } from "../election/lock.js";
import { newLeaderHealthzAdaptor } from "../election/healthz.js";
import type { ChildEvent } from "../child/events.js";
import { signalNumber } from "../child/process-group.js";
import { RestartPolicy } from "../child/restart.js";
import { forwardSignals, FORWARDED_SIGNALS, STOP_SIGNALS } from "../child/signals.js";
import type { ChildExit, ChildHandle, ChildSpawnError } from "../child/supervisor.js";
import { Watchdog } from "../child/watchdog.js";
import { openLock } from "../locks/factory.js";
import { ExitCode } from "./errors.js";
import type { Logger } from "./log.js";
import type { RunOptions } from "./options.js";
import type { HttpHooks } from "./run-http.js";

/** Backends that can name the child's process group in their record (the file lock does). */
interface ProcessGuardingLock extends ResourceLock {
  setGuardedProcessGroup(pgid: number | undefined, options?: { watchdogPid?: number; signal?: AbortSignal }): Promise<boolean>;
}

function guardsProcesses(lock: ResourceLock): lock is ProcessGuardingLock {
  return typeof (lock as Partial<ProcessGuardingLock>).setGuardedProcessGroup === "function";
}

/** Why a campaign was cancelled from our side. */
type CancelCause =
  | { kind: "child_done"; exit: ChildExit }
  | { kind: "signal"; signal: NodeJS.Signals }
  | { kind: "not_acquired" }
  | { kind: "unavailable"; message: string }
  | { kind: "internal"; error: unknown };

/** Exit code for a spawn failure, as shells report them. */
function spawnFailureExit(error: ChildSpawnError): ChildExit {
  const code = error.reason === "not_found" ? 127 : 126;
  return { code, signal: null, exitCode: code };
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The run command: campaign for the lease, run the child only while leading, stop (and reap) it before
 * the lease can pass to anyone else, release, and exit with the contract's code.
 */
export async function runLeader(options: RunOptions, baseLog: Logger): Promise<number> {
  const log = baseLog.child({ lease: options.name, identity: options.identity });
  for (const warning of options.warnings) log.warn("warning", {}, warning);
  if (options.nameDerived) log.info("lease_name", {}, `lease name "${options.name}" (derived from the command; set --name to choose one)`);

  const lock = await openLock(options.lock, {
    name: options.name,
    identity: options.identity,
    leaseDurationMs: options.leaseDurationMs,
    renewDeadlineMs: options.renewDeadlineMs,
    namespace: options.namespace,
    kubeconfig: options.kubeconfig,
    pgTable: options.pgTable,
    onInfo: (message) => log.info("backend_info", {}, message),
    onWarning: (message) => log.warn("backend_warning", {}, message),
  });

  // The supervisor pulls in execa, a large module tree: load it while we campaign rather than before.
  // With --no-wait, only once we lead, so a cron standby that finds the lease taken exits without it.
  let loading: Promise<typeof import("../child/supervisor.js")> | undefined;
  const supervisor = (): Promise<typeof import("../child/supervisor.js")> => (loading ??= import("../child/supervisor.js"));
  if (!options.noWait) supervisor().catch(() => undefined);

  let http: HttpHooks | undefined;
  try {
    if (options.http) {
      const { startRunHttp } = await import("./run-http.js");
      http = await startRunHttp(options, log);
    }
    return await new LeaderRun(options, log, lock, http, supervisor).run();
  } finally {
    await http?.close();
    await lock.close?.();
  }
}

class LeaderRun {
  private readonly elector: LeaderElector;
  private campaign = new AbortController();
  private cancelCause: CancelCause | undefined;
  private lostReason: LostReason | undefined;
  private child: ChildHandle | undefined;
  private readonly restart: RestartPolicy;
  private failuresLogged = 0;
  private stopSignal: NodeJS.Signals | undefined;
  private disposeCampaignSignals: (() => void) | undefined;
  private waitTimer: { cancel(): void } | undefined;
  /** One orphan guard per leader-run, shared by every restart of the child. */
  private readonly watchdog: Watchdog;

  constructor(
    private readonly options: RunOptions,
    private readonly log: Logger,
    private readonly lock: ResourceLock,
    private readonly http: HttpHooks | undefined,
    private readonly supervisor: () => Promise<typeof import("../child/supervisor.js")>,
  ) {
    this.watchdog = new Watchdog({
      log: (event) => this.onChildEvent(event),
      stderrFormat: options.logLevel === "error" ? "quiet" : options.logFormat,
    });
    this.restart = new RestartPolicy({ mode: options.restart, initialDelayMs: options.restartDelayMs });
    const watchDog = http ? newLeaderHealthzAdaptor(http.healthzTimeoutMs) : undefined;
    this.elector = new LeaderElector({
      lock,
      name: options.name,
      leaseDuration: options.leaseDurationMs,
      renewDeadline: options.renewDeadlineMs,
      retryPeriod: options.retryPeriodMs,
      releaseOnCancel: options.release,
      metrics: http?.metrics,
      callbacks: {
        onStartedLeading: (signal) => this.lead(signal),
        onStoppedLeading: () => undefined,
      },
      onEvent: (event) => this.onElectionEvent(event),
    });
    if (watchDog) {
      watchDog.setLeaderElection(this.elector);
      http?.attach(this.elector, watchDog);
    }
  }

  async run(): Promise<number> {
    if (this.options.waitMs !== undefined && !this.options.noWait) this.waitTimer = this.startWaitTimer(this.options.waitMs);
    this.installCampaignSignals();
    try {
      while (true) {
        this.lostReason = undefined;
        await this.elector.run(this.campaign.signal);
        const code = this.outcome();
        if (code !== undefined) return code;
        // Leadership lost with --on-lost campaign: the child is already stopped; go again.
        this.log.info("campaigning", {}, "leadership lost; campaigning again (--on-lost campaign)");
        this.campaign = new AbortController();
      }
    } finally {
      this.waitTimer?.cancel();
      this.disposeCampaignSignals?.();
      await this.watchdog.close();
    }
  }

  /** The exit code once a campaign ended, or undefined to campaign again. */
  private outcome(): number | undefined {
    const cause = this.cancelCause;
    if (cause?.kind === "child_done") return cause.exit.exitCode;
    if (cause?.kind === "signal") return 128 + signalNumber(cause.signal);
    if (cause?.kind === "not_acquired") {
      this.log.warn("not_acquired", { holder: this.elector.getLeader() }, this.notAcquiredMessage());
      return this.options.conflictExitCode;
    }
    if (cause?.kind === "internal") return ExitCode.INTERNAL;
    if (cause?.kind === "unavailable") {
      this.log.error("unavailable", {}, cause.message);
      return ExitCode.UNAVAILABLE;
    }
    if (this.lostReason !== undefined && this.lostReason !== "cancelled") {
      if (this.options.onLost === "campaign") return undefined;
      return ExitCode.LOST;
    }
    return ExitCode.INTERNAL;
  }

  private notAcquiredMessage(): string {
    const holder = this.elector.getLeader();
    const who = holder ? `"${holder}" holds lease "${this.options.name}"` : `lease "${this.options.name}" was not acquired`;
    return this.options.noWait ? `${who}; not waiting (--no-wait)` : `${who}; gave up after --wait`;
  }

  private cancel(cause: CancelCause): void {
    this.cancelCause ??= cause;
    this.campaign.abort(new Error(cause.kind));
  }

  private startWaitTimer(ms: number): { cancel(): void } {
    const timer = setTimeout(() => {
      if (!this.elector.isLeading() && this.child === undefined) this.cancel({ kind: "not_acquired" });
    }, ms);
    return { cancel: () => clearTimeout(timer) };
  }

  /** While no child runs, a stop signal ends the campaign at once; the other signals are ignored. */
  private installCampaignSignals(): void {
    const handlers = FORWARDED_SIGNALS.map((sig) => {
      const handler = (): void => {
        if (this.child !== undefined) return; // the child's own forwarder handles it
        if (!STOP_SIGNALS.has(sig)) {
          this.log.debug("signal_ignored", { signal: sig }, `${sig} ignored: no child is running`);
          return;
        }
        this.log.info("stopping", { signal: sig }, `${sig} received while campaigning; stopping`);
        if (this.elector.isLeading()) {
          // Between leadership and the child's start (or between restarts): end leadership cleanly.
          this.stopSignal ??= sig;
        }
        this.cancel({ kind: "signal", signal: sig });
      };
      process.on(sig, handler);
      return [sig, handler] as const;
    });
    this.disposeCampaignSignals = () => {
      for (const [sig, handler] of handlers) process.off(sig, handler);
    };
  }

  private onElectionEvent(event: ElectionEvent): void {
    this.http?.onElectionEvent(event);
    const log = this.log;
    switch (event.type) {
      case "campaigning":
        log.info("campaigning", { lock: this.options.lock.redacted, where: event.lock });
        return;
      case "acquired":
        this.failuresLogged = 0;
        // --wait bounds the wait for the first acquisition only.
        this.waitTimer?.cancel();
        log.info("acquired", { term: event.term });
        return;
      case "acquire_failed":
        this.onAcquireFailed(event.error, event.holder);
        return;
      case "renewed":
        log.debug("renewed", { term: this.elector.term(), latency_ms: Math.round(event.latencyMs), slow_path: event.slowPath });
        return;
      case "renew_failed":
        log.warn("renew_failed", { term: this.elector.term(), error: describeError(event.error), deadline_in_ms: Math.round(event.deadlineInMs) });
        return;
      case "lost":
        this.lostReason = event.reason;
        if (event.reason !== "cancelled") {
          log.error("lost", { term: this.elector.term(), reason: event.reason, holder: event.holder }, event.reason === "foreign_holder" ? `another holder ("${event.holder ?? ""}") took the lease; stopping the child` : "could not renew the lease before the renew deadline; stopping the child");
        }
        return;
      case "work_overran":
        log.error("not_released", {}, "the child's process group could not be confirmed gone in time; the lease is left to expire instead of being released");
        return;
      case "released":
        log.info("released", { term: this.elector.term() });
        return;
      case "release_failed":
        log.warn("release_failed", { error: describeError(event.error) }, "could not release the lease; it will expire by itself");
        return;
      case "new_leader":
        if (event.identity !== this.options.identity) log.info("new_leader", { leader: event.identity || "(none)" });
        return;
      case "callback_error":
        log.error("internal_error", { callback: event.callback, error: describeError(event.error) });
        return;
    }
  }

  private onAcquireFailed(error: unknown, holder: string | undefined): void {
    if (error instanceof PermanentLockError) {
      this.cancel({ kind: "unavailable", message: error.message });
      return;
    }
    // A lost create/update race means another process won the same write just now: contention, like a
    // valid lease held by someone else, never "unavailable" (two `--no-wait` cron runs must give 75).
    if (error === undefined || error instanceof AlreadyExistsError || error instanceof ConflictError) {
      if (holder === this.options.identity && error instanceof Error && this.failuresLogged === 0) {
        // Our own identity in the record but another process behind it (file lock): say why we wait.
        this.failuresLogged = 1;
        this.log.warn("waiting", { holder }, error.message);
        if (this.options.noWait) this.cancel({ kind: "not_acquired" });
        return;
      }
      // Someone else holds a valid lease.
      if (this.options.noWait) this.cancel({ kind: "not_acquired" });
      else if (this.failuresLogged === 0) {
        this.failuresLogged = 1;
        this.log.info("waiting", { holder }, `${holder ? `"${holder}"` : "another process"} holds the lease; waiting`);
      }
      return;
    }
    if (this.options.noWait) {
      this.cancel({ kind: "unavailable", message: `cannot reach the lock (${describeError(error)}); not waiting (--no-wait)` });
      return;
    }
    // Unreachable or flaky backend: keep campaigning, but do not flood the log.
    this.failuresLogged++;
    if (this.failuresLogged <= 3 || this.failuresLogged % 30 === 0) {
      this.log.warn("acquire_failed", { error: describeError(error), attempts: this.failuresLogged }, "lock unavailable; retrying");
    }
  }

  /**
   * onStartedLeading. A bug in here must not leave us leading with no child: it ends the campaign
   * (exit 70) after whatever child was started has been stopped.
   */
  private async lead(leading: AbortSignal): Promise<void> {
    try {
      await this.superviseChild(leading);
    } catch (error) {
      this.log.error("internal_error", { error: describeError(error) }, "internal error while supervising the child; this is a bug in leader-run");
      // The lease is released once this returns, so a child must be gone first.
      const stopped = await this.child?.stop("internal error");
      this.cancel({ kind: "internal", error });
      if (stopped && !stopped.groupGone) return new Promise<void>(() => undefined);
    }
  }

  private async superviseChild(leading: AbortSignal): Promise<void> {
    const term = this.elector.term() ?? 0;
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
        this.cancel({ kind: "child_done", exit: spawnFailureExit(error) });
        return;
      }
      this.child = child;
      if (guardsProcesses(this.lock)) void this.lock.setGuardedProcessGroup(child.pgid, { watchdogPid: this.watchdog.pid });
      this.http?.childStarted();

      const disposeSignals = forwardSignals(child, (sig) => {
        if (this.stopSignal === undefined) {
          this.stopSignal = sig;
          this.log.info("stopping", { signal: sig }, `${sig} received; waiting for the child to exit (SIGKILL after ${this.options.killGraceMs}ms)`);
          void child.stop(`${sig} received`, { firstSignal: null });
        } else {
          this.log.warn("killing", { signal: "SIGKILL" }, `second ${sig}: killing the child's process group now`);
          child.signal("SIGKILL");
        }
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
      this.child = undefined;
      this.http?.childExited(exit.exitCode);
      if (!stopped.groupGone) {
        // Something in the group survived SIGKILL: never settle, so the elector leaves the lease to expire.
        this.log.error("group_survived", { pgid: child.pgid }, "processes of the child's group survived SIGKILL; the lease will not be released");
        // After a lost lease the exit stays 76; otherwise end the campaign with the child's status.
        if (!leading.aborted) this.cancel({ kind: "child_done", exit });
        return new Promise<void>(() => undefined);
      }
      if (guardsProcesses(this.lock)) void this.lock.setGuardedProcessGroup(undefined);
      if (leading.aborted) return;

      const ranForMs = performance.now() - child.startedAt;
      const restartIn = this.stopSignal === undefined ? this.restart.nextDelay(exit, ranForMs) : undefined;
      if (restartIn === undefined) {
        this.cancel({ kind: "child_done", exit });
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

  private onChildEvent(event: ChildEvent): void {
    switch (event.type) {
      case "child_started":
        this.log.info("child_started", { pid: event.pid, term: this.elector.term() });
        return;
      case "child_exited":
        this.log.info("child_exited", { pid: event.pid, exit_code: event.exitCode, signal: event.signal ?? undefined });
        return;
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
        if (guardsProcesses(this.lock)) void this.lock.setGuardedProcessGroup(this.child?.pgid, { watchdogPid: event.pid });
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
