import { setTimeout as delay } from "node:timers/promises";
import { LeadershipEndedError } from "../election/elector.js";
import type { ProcessGuard } from "../locks/backend.js";
import type { ChildEvent } from "../child/events.js";
import { RestartPolicy } from "../child/restart.js";
import type { ChildExit, ChildHandle, ChildSpawnError, PreparedGate } from "../child/supervisor.js";
import { Guard, GuardUnavailableError } from "../child/guard.js";
import type { Logger } from "./log.js";
import type { RunOptions } from "./options.js";
import type { HttpHooks } from "./run-http.js";
import { leaseDeadlines, safeGraceMs, type LeaseDeadlines } from "./run-deadlines.js";
import { forwardChildSignals } from "./run-signals.js";


/** How the child side ends a campaign. */
export type ChildOutcome = { kind: "child_done"; exit: ChildExit } | { kind: "internal"; error: unknown };

/** What child control needs from the campaign around it. */
export interface ChildControlHost {
  /** The current term (fencing token), for the child's environment and logs. */
  term(): number | undefined;
  /** The monotonic time (performance.now()) at which we stop leading unless renewed, when leading. */
  stopDeadline(): number | undefined;
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

/** How the last child's group ended: "survived" when something outlived SIGKILL. */
export type GroupFate = "gone" | "survived";

/**
 * Child control for one leader-run: starts the child once we lead, restarts it by --restart, stops
 * (and reaps) its whole group when leadership ends or a stop signal arrives, and gives the guard
 * every new deadline.
 */
export class ChildControl {
  private current: ChildHandle | undefined;
  private stopSignal: NodeJS.Signals | undefined;
  /** When the command first started (performance.now()), for --min-hold. */
  private firstStartedAt: number | undefined;
  private readonly restart: RestartPolicy;
  /** The dead-man's switch, one per leader-run, shared by every restart of the child. */
  private readonly guard: Guard;
  private deadlines: LeaseDeadlines | undefined;
  /** Settles once the last lead()'s child group is gone (or known to have survived SIGKILL). */
  private fate: Promise<GroupFate> = Promise.resolve("gone");
  private preparing = false;
  /** The start gate spawned while waiting (see `prepare`), until the next start takes it. */
  private prepared: PreparedGate | undefined;
  /** Which preparation may still install its gate: a start or close moves it on, and a stale one discards. */
  private gateGeneration = 0;
  /** A gate is being spawned for `prepared`. */
  private gatePending = false;
  private closed = false;

  constructor(
    private readonly options: RunOptions,
    private readonly log: Logger,
    /** Present exactly when the backend declares `seesHolderProcesses` (src/locks/backend.ts). */
    private readonly processGuard: ProcessGuard | undefined,
    private readonly http: HttpHooks | undefined,
    private readonly supervisor: SupervisorLoader,
    private readonly host: ChildControlHost,
  ) {
    this.guard = new Guard({
      log: (event) => this.onChildEvent(event),
      stderrFormat: options.logLevel === "error" ? "quiet" : options.logFormat,
      onUnguarded: (pgid, error) => this.onUnguarded(pgid, error),
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
    this.closed = true;
    this.gateGeneration++;
    const prepared = this.prepared;
    this.prepared = undefined;
    await Promise.all([prepared?.discard(), this.guard.close()]);
  }

  /**
   * A standby waiting for the lease: start the guard now (idle, guarding nothing), do the child's
   * one-time start-up work and spawn its start gate, so that acquiring the lease is followed only by
   * one acknowledged message to the guard and one to the gate. Fail-closed as before: the gate opens
   * only once the guard acknowledged the child's group with this term's deadline, and a guard that died
   * meanwhile is replaced first (Guard.start/watch); a gate that died is replaced by a fresh one at
   * start. The gate's group and the guard go into our record from the acquiring write on (file lock),
   * so a standby on this host waits for them as for a started child. A failure here only means the
   * start does that work itself.
   */
  prepare(): void {
    if (!this.preparing) {
      this.preparing = true;
      void this.guard.start().catch(() => undefined);
    }
    if (this.prepared !== undefined || this.gatePending || this.closed) return;
    this.gatePending = true;
    const generation = this.gateGeneration;
    void this.supervisor()
      .then(async (s) => {
        await s.prepareStart();
        if (generation !== this.gateGeneration) return;
        const gate = await s.prepareGate({
          command: this.options.command,
          shell: this.options.shell,
          env: this.childEnv(),
          killSignal: this.options.killSignal,
        });
        if (gate === undefined) return;
        // A start (or close) that came meanwhile went without it.
        if (generation !== this.gateGeneration) return void gate.discard();
        this.prepared = gate;
        // A prepared gate that ends unused (killed from outside) is forgotten, so the next wait
        // prepares a fresh one instead of the start finding it dead.
        void gate.exited.then(() => {
          if (this.prepared === gate) this.prepared = undefined;
        });
        await this.guard.start();
        if (this.processGuard !== undefined && this.guard.pid !== undefined && this.prepared === gate) {
          await this.processGuard.setGuardedProcessGroup(gate.pid, { watchdogPid: this.guard.pid, deferWrite: true });
        }
      })
      .catch(() => undefined)
      .finally(() => {
        this.gatePending = false;
      });
  }

  /** The prepared gate for this start, if any; a gate still being spawned is not waited for. */
  private takePrepared(): PreparedGate | undefined {
    this.gateGeneration++;
    const prepared = this.prepared;
    this.prepared = undefined;
    return prepared;
  }

  /**
   * A successful acquire or renew, its write sent at `sentAt` (performance.now()): the guard's new
   * deadline. Synchronous, so nothing of ours can delay it past the event.
   */
  onLeaseWritten(sentAt: number): void {
    this.deadlines = leaseDeadlines(sentAt, this.options);
    this.guard.extend(this.deadlines);
  }

  /**
   * Resolves once the previous leadership's child group is gone: "survived" if something outlived
   * SIGKILL. Campaigning again before that could run two copies of the command.
   */
  settled(): Promise<GroupFate> {
    return this.fate;
  }

  /**
   * Last resort (an unhandled rejection or exception): stop the child within the grace still safe,
   * bounded, so the caller can exit. The guard stops the group anyway once our pipe closes.
   */
  async emergencyStop(reason: string): Promise<void> {
    const child = this.current;
    if (child === undefined) return;
    const grace = this.graceNow();
    await Promise.race([child.stop(reason, { graceMs: grace }), new Promise((resolve) => setTimeout(resolve, grace + 2000).unref())]);
  }

  /** The kill grace a stop starting now may use: shortened to what is still safe, down to 0. */
  private graceNow(): number {
    return safeGraceMs(this.deadlines, this.options.killGraceMs, performance.now());
  }

  /**
   * onStartedLeading. A bug in here must not leave us leading with no child: it ends the campaign
   * (exit 70) after whatever child was started has been stopped.
   */
  lead(leading: AbortSignal): Promise<void> {
    // --min-hold counts from the first start of this term's command, not of an earlier term's.
    this.firstStartedAt = undefined;
    let settle: (fate: GroupFate) => void = () => undefined;
    this.fate = new Promise((resolve) => (settle = resolve));
    return this.leadAndSettle(leading, settle);
  }

  private async leadAndSettle(leading: AbortSignal, settle: (fate: GroupFate) => void): Promise<void> {
    let fate: GroupFate = "gone";
    try {
      fate = await this.superviseChild(leading);
    } catch (error) {
      if (error instanceof GuardUnavailableError) {
        this.log.error("guard_unavailable", { error: error.message }, `no child is started without a live guard: ${error.message}`);
      } else {
        this.log.error("internal_error", { error: describeError(error) }, "internal error while supervising the child; this is a bug in leader-run");
      }
      // The lease is released once this returns, so a child must be gone first.
      const stopped = await this.current?.stop("internal error", { graceMs: this.graceNow() });
      this.current = undefined;
      this.host.cancel({ kind: "internal", error });
      if (stopped && !stopped.groupGone) fate = "survived";
    } finally {
      settle(fate);
    }
    // Something survived SIGKILL: never settle, so the elector leaves the lease to expire.
    if (fate === "survived") return new Promise<void>(() => undefined);
  }

  /** A guard that died could not be restarted: the child must not run unguarded. */
  private onUnguarded(pgid: number, error: GuardUnavailableError): void {
    const child = this.current;
    if (child === undefined || child.pgid !== pgid) return;
    this.log.error("guard_unavailable", { pgid, error: error.message }, `the guard died and could not be restarted; stopping the child: ${error.message}`);
    this.host.cancel({ kind: "internal", error });
    void child.stop("guard unavailable", { graceMs: this.graceNow() });
  }

  private async superviseChild(leading: AbortSignal): Promise<GroupFate> {
    const term = this.host.term() ?? 0;
    while (!leading.aborted) {
      if (this.stopSignal !== undefined) return "gone";
      const { startChild, ChildSpawnError } = await this.supervisor();
      // Name the guard in the record before the child exists: if we die between spawning the child and
      // recording its group, a standby on this host still waits for the guard that is killing it.
      await this.guard.start();
      const prepared = this.takePrepared();
      if (this.processGuard !== undefined && this.guard.pid !== undefined) {
        await this.processGuard.setGuardedProcessGroup(prepared?.pid, { watchdogPid: this.guard.pid, signal: leading });
      }
      if (leading.aborted) {
        await prepared?.discard();
        return "gone";
      }
      let child: ChildHandle;
      try {
        child = await startChild({
          command: this.options.command,
          shell: this.options.shell,
          env: this.childEnv(),
          termEnv: { LEADER_RUN_FENCING_TOKEN: String(term) },
          prepared,
          killSignal: this.options.killSignal,
          killGraceMs: this.options.killGraceMs,
          log: (event) => this.onChildEvent(event),
          guard: this.guard,
          mayStart: () => {
            const deadline = this.host.stopDeadline();
            return !leading.aborted && (deadline === undefined || performance.now() < deadline);
          },
          // The guard that acknowledged (a replacement of a pre-started one that died, too) and the
          // group go into the record before the command exists. Best effort: a failed write leaves
          // the earlier facts, and the lease itself is unaffected.
          beforeGate: async (pgid) => {
            await this.processGuard?.setGuardedProcessGroup(pgid, { watchdogPid: this.guard.pid, signal: leading }).catch(() => undefined);
          },
        });
      } catch (error) {
        if (!(error instanceof ChildSpawnError)) throw error;
        this.log.error("child_failed", {}, error.message);
        this.host.cancel({ kind: "child_done", exit: spawnFailureExit(error) });
        return "gone";
      }
      this.current = child;
      this.firstStartedAt ??= child.startedAt;
      this.http?.childStarted();

      const disposeSignals = forwardChildSignals(child, this.log, () => this.graceNow(), (sig) => {
        if (this.stopSignal !== undefined) return false;
        this.stopSignal = sig;
        return true;
      });
      const onLeadershipEnd = (): void => {
        const reason = leading.reason instanceof LeadershipEndedError ? leading.reason.reason : "cancelled";
        // We send the kill signal ourselves now: the guard keeps only its SIGKILL deadline, so the
        // command does not get the signal twice (a second SIGTERM means "force quit" to many programs,
        // and it hits whatever the command is running in its signal handler).
        if (this.deadlines !== undefined) this.guard.extend({ signalAt: this.deadlines.killAt, killAt: this.deadlines.killAt });
        // A stop that starts late (after a pause) gets only the grace still safe, down to SIGKILL now.
        void child.stop(`leadership ended (${reason})`, { graceMs: this.graceNow() });
      };
      leading.addEventListener("abort", onLeadershipEnd, { once: true });
      // Leadership may have ended (or a stop signal arrived) while the child was being spawned.
      if (leading.aborted) onLeadershipEnd();

      const exit = await child.exited;
      // Also after a clean exit: stragglers of the group must be gone before the lease can be released.
      const stopped = await child.stop(leading.aborted ? "leadership ended" : "child exited", { graceMs: this.graceNow() });
      leading.removeEventListener("abort", onLeadershipEnd);
      disposeSignals();
      this.current = undefined;
      this.http?.childExited(exit.exitCode);
      if (!stopped.groupGone) {
        // Something in the group survived SIGKILL: never settle, so the elector leaves the lease to expire.
        this.log.error("group_survived", { pgid: child.pgid }, "processes of the child's group survived SIGKILL; the lease will not be released");
        // After a lost lease the exit stays 76; otherwise end the campaign with the child's status.
        if (!leading.aborted) this.host.cancel({ kind: "child_done", exit });
        return "survived";
      }
      void this.processGuard?.setGuardedProcessGroup(undefined);
      if (leading.aborted) return "gone";
      const stopDeadline = this.host.stopDeadline();
      if (stopDeadline !== undefined && performance.now() >= stopDeadline) {
        // Past our own stop deadline (our event loop was starved or frozen): the guard stopped the
        // command, and our deadline timer is about to end leadership. That is a lost lease (76), not the
        // command's own exit, and never a reason to restart it.
        await new Promise<void>((resolve) => {
          if (leading.aborted) resolve();
          else leading.addEventListener("abort", () => resolve(), { once: true });
        });
        return "gone";
      }

      const ranForMs = performance.now() - child.startedAt;
      const restartIn = this.stopSignal === undefined ? this.restart.nextDelay(exit, ranForMs) : undefined;
      if (restartIn === undefined) {
        this.firstStartedAt ??= child.startedAt;
        await this.holdAfterExit(this.firstStartedAt, leading);
        this.host.cancel({ kind: "child_done", exit });
        return "gone";
      }
      this.log.info("restarting", { exit_code: exit.exitCode, delay_ms: restartIn }, `child exited with ${exit.exitCode}; restarting in ${restartIn}ms (--restart ${this.options.restart})`);
      this.http?.childRestarted();
      try {
        await delay(restartIn, undefined, { signal: leading });
      } catch {
        return "gone";
      }
    }
    return "gone";
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
      case "group_gone":
        this.log.debug("group_gone", { pgid: event.pgid });
        return;
      case "guard_armed":
        this.log.debug("guard_armed", { pgid: event.pgid });
        return;
      case "guard_started":
        // A restarted guard (someone killed ours) must be the one the record names. Without a child (a
        // standby, or between restarts) the next write of ours carries it: a write now would rewrite a
        // record of ours left from an earlier term and restart the other standbys' wait.
        void this.processGuard?.setGuardedProcessGroup(this.current?.pgid ?? this.prepared?.pid, {
          watchdogPid: event.pid,
          deferWrite: this.current === undefined,
        });
        this.log.debug("guard_started", { pid: event.pid, shell: event.shell });
        return;
      case "guard_exited":
        this.log.warn("guard_exited", { pid: event.pid, code: event.code ?? undefined, signal: event.signal ?? undefined }, "the guard died; restarting it");
        return;
      case "guard_failed":
        this.log.debug("guard_failed", { error: describeError(event.error) });
        return;
    }
  }

  /** The child's environment but the term's fencing token, which the gate adds (`termEnv`). */
  private childEnv(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value;
    // An inherited token (leader-run inside a leader-run child) must not reach our command: the gate
    // exports this term's.
    delete env.LEADER_RUN_FENCING_TOKEN;
    env.LEADER_RUN_NAME = this.options.name;
    env.LEADER_RUN_IDENTITY = this.options.identity;
    env.LEADER_RUN_LOCK = this.options.lock.redacted;
    return env;
  }
}
