import type { Logger } from "./log.js";
import { forwardSignals, FORWARDED_SIGNALS, STOP_SIGNALS } from "../child/signals.js";

/**
 * What leader-run does with a signal while no child runs (campaigning, or between restarts): a stop
 * signal ends the campaign at once; the others are ignored. While a child runs, the child's forwarder
 * (see src/child/signals.ts and ChildControl) handles them instead.
 */
export interface CampaignSignalHooks {
  /** True while a child runs: its own forwarder then handles every signal. */
  childRunning(): boolean;
  /** A stop signal arrived while no child runs. */
  onStop(signal: NodeJS.Signals): void;
}

/** Installs the campaign-time handlers; returns their disposer. */
export function installCampaignSignals(log: Logger, hooks: CampaignSignalHooks): () => void {
  const handlers = FORWARDED_SIGNALS.map((sig) => {
    const handler = (): void => {
      if (hooks.childRunning()) return;
      if (!STOP_SIGNALS.has(sig)) {
        log.debug("signal_ignored", { signal: sig }, `${sig} ignored: no child is running`);
        return;
      }
      log.info("stopping", { signal: sig }, `${sig} received while campaigning; stopping`);
      hooks.onStop(sig);
    };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) process.off(sig, handler);
  };
}

/** What the child forwarder needs of the child. */
export interface StoppableChild {
  signal(signal: NodeJS.Signals): boolean;
  stop(reason: string, options?: { firstSignal?: NodeJS.Signals | null; graceMs?: number }): Promise<unknown>;
}

/**
 * While a child runs: every forwarded signal reaches its group; the first stop signal starts a clean
 * stop (the signal itself was already forwarded, so only the grace and SIGKILL follow), a second one
 * kills the group at once. `claimStop` records the stop signal and says whether it was the first.
 */
export function forwardChildSignals(
  child: StoppableChild,
  log: Logger,
  graceMs: () => number,
  claimStop: (signal: NodeJS.Signals) => boolean,
): () => void {
  return forwardSignals(child, (sig) => {
    if (claimStop(sig)) {
      const grace = graceMs();
      log.info("stopping", { signal: sig }, `${sig} received; waiting for the child to exit (SIGKILL after ${grace}ms)`);
      void child.stop(`${sig} received`, { firstSignal: null, graceMs: grace });
    } else {
      log.warn("killing", { signal: "SIGKILL" }, `second ${sig}: killing the child's process group now`);
      child.signal("SIGKILL");
    }
  });
}

/** Job-control signals: leader-run must never be frozen while it guards a child (see installJobControlGuard). */
export const JOB_CONTROL_SIGNALS = ["SIGTSTP", "SIGTTIN", "SIGTTOU"] as const;

/**
 * Ctrl-Z (SIGTSTP) and background-terminal I/O (SIGTTIN, SIGTTOU) would stop leader-run while its child
 * (in its own session, untouched by the terminal) runs on past the lease. Handling them keeps us
 * running; the log says so. Returns the disposer.
 */
export function installJobControlGuard(log: Logger): () => void {
  const handlers = JOB_CONTROL_SIGNALS.map((sig) => {
    const handler = (): void => log.warn("signal_ignored", { signal: sig }, `${sig} ignored: leader-run is not stopped while it guards a lease`);
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) process.off(sig, handler);
  };
}
