import { LeaderElector } from "../election/elector.js";
import type { ElectionEvent, LostReason } from "../election/events.js";
import { AlreadyExistsError, ConflictError, PermanentLockError, type ResourceLock } from "../election/lock.js";
import { newLeaderHealthzAdaptor } from "../election/healthz.js";
import { checkCommand } from "../child/preflight.js";
import { signalNumber } from "../child/process-group.js";
import type { ProcessGuard } from "../locks/backend.js";
import { openLock } from "../locks/registry.js";
import { ExitCode } from "./errors.js";
import { HookRunner, type HookContext } from "./hooks.js";
import type { Logger } from "./log.js";
import type { RunOptions } from "./options.js";
import type { HttpHooks } from "./run-http.js";
import { ChildControl, describeError, type ChildOutcome, type SupervisorLoader } from "./run-child.js";
import { installCampaignSignals, installJobControlGuard } from "./run-signals.js";

/** Why a campaign was cancelled from our side. */
type CancelCause =
  | ChildOutcome
  | { kind: "signal"; signal: NodeJS.Signals }
  | { kind: "not_acquired" }
  | { kind: "unavailable"; message: string };

/**
 * The run command: campaign for the lease, run the child only while leading, stop (and reap) it before
 * the lease can pass to anyone else, release, and exit with the contract's code.
 */
export async function runLeader(options: RunOptions, baseLog: Logger): Promise<number> {
  const log = baseLog.child({ lease: options.name, identity: options.identity });
  for (const warning of options.warnings) log.warn("warning", {}, warning);
  if (options.nameDerived) log.info("lease_name", {}, `lease name "${options.name}" (derived from the command; set --name to choose one)`);

  // Refuse a command that cannot run before waiting for the lease (a typo must not wait an hour to
  // say 127).
  const problem = checkCommand(options.command, options.shell, process.env);
  if (problem !== undefined) {
    log.error("child_failed", {}, `${problem.message}; not campaigning`);
    return problem.exitCode;
  }
  let loading: Promise<typeof import("../child/supervisor.js")> | undefined;
  const supervisor: SupervisorLoader = () => (loading ??= import("../child/supervisor.js"));
  // The supervisor (and node:child_process with it) loads while the lease is read, unless this is a
  // --no-wait run, which most often finds the lease taken and then never needs it.
  if (!options.noWait) void supervisor().catch(() => undefined);

  const { lock, processGuard } = await openLock(options.lock, {
    name: options.name,
    identity: options.identity,
    leaseDurationMs: options.leaseDurationMs,
    renewDeadlineMs: options.renewDeadlineMs,
    namespace: options.namespace,
    kubeconfig: options.kubeconfig,
    tlsCaFile: options.tlsCaFile,
    tlsCertFile: options.tlsCertFile,
    tlsKeyFile: options.tlsKeyFile,
    etcdPasswordFile: options.etcdPasswordFile,
    pgTable: options.pgTable,
    onInfo: (message) => log.info("backend_info", {}, message),
    onWarning: (message) => log.warn("backend_warning", {}, message),
  });

  let http: HttpHooks | undefined;
  try {
    if (options.http) {
      const { startRunHttp } = await import("./run-http.js");
      http = await startRunHttp(options, log);
    }
    const hooks = new HookRunner(options.hooks, options.hookTimeoutMs, log);
    const run = new LeaderRun(options, log, lock, processGuard, http, supervisor, hooks);
    const disposeLastResort = installLastResort(log, run);
    try {
      return await run.run();
    } finally {
      disposeLastResort();
      // After the lease was released (or left): a hook can no longer delay that, only our exit.
      await hooks.drain();
    }
  } finally {
    await http?.close();
    await lock.close?.();
  }
}

/** What the last-resort handler needs: stop the child, bounded. */
interface EmergencyStop {
  emergencyStop(reason: string): Promise<void>;
}

/**
 * A bug that escapes every handler (an unhandled rejection or exception) must not leave the child
 * running unsupervised or the process in an unknown state: stop the child within the grace still
 * safe, then exit 70. The lease is left to expire (it is not released from a state we cannot trust).
 */
function installLastResort(log: Logger, run: EmergencyStop): () => void {
  let handling = false;
  const handler = (error: unknown): void => {
    if (handling) return;
    handling = true;
    log.error("internal_error", { error: describeError(error) }, "unexpected internal error; stopping the child and exiting (this is a bug in leader-run)");
    void run.emergencyStop("internal error").finally(() => process.exit(ExitCode.INTERNAL));
  };
  process.on("uncaughtException", handler);
  process.on("unhandledRejection", handler);
  return () => {
    process.off("uncaughtException", handler);
    process.off("unhandledRejection", handler);
  };
}

class LeaderRun implements EmergencyStop {
  private readonly elector: LeaderElector;
  private campaign = new AbortController();
  private cancelCause: CancelCause | undefined;
  private lostReason: LostReason | undefined;
  private failuresLogged = 0;
  private disposeCampaignSignals: (() => void) | undefined;
  private waitTimer: { cancel(): void } | undefined;
  private readonly child: ChildControl;
  /** The term we lead (or led) in the current campaign, for --on-stopped-leading. */
  private ledTerm: number | undefined;

  constructor(
    private readonly options: RunOptions,
    private readonly log: Logger,
    lock: ResourceLock,
    processGuard: ProcessGuard | undefined,
    private readonly http: HttpHooks | undefined,
    supervisor: SupervisorLoader,
    private readonly hooks: HookRunner,
  ) {
    this.child = new ChildControl(options, log, processGuard, http, supervisor, {
      term: () => this.elector.term(),
      stopDeadline: () => {
        const term = this.elector.currentTerm();
        return term?.active ? term.stopDeadline : undefined;
      },
      cancel: (outcome) => this.cancel(outcome),
    });
    const watchDog = http ? newLeaderHealthzAdaptor(http.healthzTimeoutMs) : undefined;
    if (log.isEnabled("debug")) traceWatch(lock, log);
    this.elector = new LeaderElector({
      lock,
      name: options.name,
      leaseDuration: options.leaseDurationMs,
      renewDeadline: options.renewDeadlineMs,
      retryPeriod: options.retryPeriodMs,
      releaseOnCancel: options.release,
      metrics: http?.metrics,
      callbacks: {
        onStartedLeading: (signal) => this.child.lead(signal),
        onStoppedLeading: () => {
          // Called after every campaign, also one that never led: fire only for a term we held.
          if (this.ledTerm === undefined) return;
          this.hooks.fire("on-stopped-leading", this.hookContext(this.ledTerm));
          this.ledTerm = undefined;
        },
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
    const disposeJobControl = installJobControlGuard(this.log);
    try {
      while (true) {
        this.lostReason = undefined;
        await this.elector.run(this.campaign.signal);
        const code = this.outcome();
        if (code !== undefined) return code;
        // Leadership lost with --on-lost campaign. The elector returns as soon as the lease's safety
        // deadline passes, even if the child is still stopping (work_overran): never campaign (and so
        // never start a second copy) before the previous child's group is confirmed gone.
        if ((await this.child.settled()) === "survived") {
          this.log.error("lost", {}, "the previous child's process group survived SIGKILL; not campaigning again");
          return ExitCode.LOST;
        }
        this.log.info("campaigning", {}, "leadership lost; campaigning again (--on-lost campaign)");
        this.campaign = new AbortController();
      }
    } finally {
      this.waitTimer?.cancel();
      disposeJobControl();
      this.disposeCampaignSignals?.();
      await this.child.close();
    }
  }

  emergencyStop(reason: string): Promise<void> {
    return this.child.emergencyStop(reason);
  }

  /** The exit code once a campaign ended, or undefined to campaign again. */
  private outcome(): number | undefined {
    const cause = this.cancelCause;
    if (cause?.kind === "child_done") return cause.exit.exitCode;
    if (cause?.kind === "signal") return 128 + signalNumber(cause.signal);
    if (cause?.kind === "not_acquired") {
      // With --no-wait, finding the lease taken is the normal skip of a cron run: info, so --quiet says
      // nothing. Giving up after --wait is a surprise worth a warning.
      const level = this.options.noWait ? "info" : "warn";
      this.log[level]("not_acquired", { holder: this.elector.getLeader() }, this.notAcquiredMessage());
      return this.options.conflictExitCode;
    }
    if (cause?.kind === "internal") return ExitCode.INTERNAL;
    if (cause?.kind === "unavailable") {
      this.log.error("unavailable", {}, cause.message);
      return ExitCode.UNAVAILABLE;
    }
    if (this.lostReason !== undefined && this.lostReason !== "cancelled") {
      if (this.options.onLost === "campaign") return undefined;
      // Stepping down on request is a clean end, not a loss.
      if (this.lostReason === "handover") return ExitCode.OK;
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
      if (!this.elector.isLeading() && !this.child.running) this.cancel({ kind: "not_acquired" });
    }, ms);
    return { cancel: () => clearTimeout(timer) };
  }

  private installCampaignSignals(): void {
    this.disposeCampaignSignals = installCampaignSignals(this.log, {
      childRunning: () => this.child.running,
      onStop: (sig) => {
        // Between leadership and the child's start (or between restarts): end leadership cleanly.
        if (this.elector.isLeading()) this.child.requestStop(sig);
        this.cancel({ kind: "signal", signal: sig });
      },
    });
  }

  private onElectionEvent(event: ElectionEvent): void {
    // First: the guard's deadline must not wait on anything else we do with the event.
    if (event.type === "acquired" || event.type === "renewed") this.child.onLeaseWritten(event.sentAt);
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
        this.ledTerm = event.term;
        this.hooks.fire("on-started-leading", this.hookContext(event.term));
        return;
      case "acquire_failed":
        this.onAcquireFailed(event.error, event.holder);
        // Waiting as a standby: get the guard ready for a fast hand-over. Not with --no-wait, whose
        // campaign ends here, nor before the first attempt, so an uncontended start is unchanged.
        if (!this.options.noWait && !this.campaign.signal.aborted) this.child.prepare();
        return;
      case "renewed":
        log.debug("renewed", { term: this.elector.term(), latency_ms: Math.round(event.latencyMs), slow_path: event.slowPath });
        return;
      case "renew_failed":
        log.warn("renew_failed", { term: this.elector.term(), error: describeError(event.error), deadline_in_ms: Math.round(event.deadlineInMs) });
        return;
      case "lost":
        this.lostReason = event.reason;
        if (event.reason === "handover") {
          log.info("handing_over", { term: this.elector.term() }, "a hand-over was requested (leader-run step-down); stopping the child, then releasing the lease");
        } else if (event.reason !== "cancelled") {
          log.error("lost", { term: this.elector.term(), reason: event.reason, holder: event.holder }, event.reason === "foreign_holder" ? (event.holder === this.options.identity ? `another process wrote our identity ("${event.holder}") into the lease; stopping the child` : event.holder ? `another holder ("${event.holder}") took the lease; stopping the child` : "the lease was released under us (leader-run release --force?); stopping the child") : "could not renew the lease before the renew deadline; stopping the child");
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
        if (event.identity !== "") this.hooks.fire("on-new-leader", { ...this.hookContext(this.elector.term()), newLeader: event.identity });
        return;
      case "callback_error":
        log.error("internal_error", { callback: event.callback, error: describeError(event.error) });
        return;
      case "call_abandoned":
        log.debug("call_abandoned", { op: event.op, phase: event.phase, reason: describeError(event.reason) });
        return;
      case "identity_in_use":
        log.warn("identity_in_use", { wait_ms: Math.round(event.waitMs) }, `a record naming our identity "${event.identity}" was written by another process; waiting until it is unchanged for its lease duration (give every process its own --identity)`);
        return;
      case "lease_deleted":
        log.warn("lease_deleted", { leading: event.leading, recreate_in_ms: Math.round(event.recreateInMs) }, event.leading ? "the lease record was deleted while we lead; re-creating it with our term" : "the lease record was deleted; waiting a lease duration, then re-creating it with a higher term");
        return;
    }
  }

  private hookContext(term: number | undefined): HookContext {
    return { name: this.options.name, identity: this.options.identity, term };
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

}

/**
 * Debug only: logs each change notification the backend delivers while we campaign, so a hand-over's
 * time between the release and the standby's wake-up can be measured (docs/performance.md). The
 * lock's own method is wrapped on the instance; the callback order is unchanged.
 */
export function traceWatch(lock: ResourceLock, log: Logger): void {
  const watch = lock.watch?.bind(lock);
  if (watch === undefined) return;
  // Everything passes through: the record a notification carries and the watch's health decide how
  // often a waiting candidate reads (dropping them made debug runs poll every retry period).
  lock.watch = (onChange, signal, onHealth) =>
    watch(
      (seen) => {
        log.debug("lease_changed", {});
        onChange(seen);
      },
      signal,
      onHealth,
    );
}
