/**
 * Signals that reach leader-run while a child runs. Every one is passed on to the child's whole
 * group (it has its own session, so a terminal's Ctrl-C reaches only us). The terminating ones also
 * ask the caller to start a clean stop: wait for the child, SIGKILL after the grace, release, exit
 * with the child's status. The usual recipe:
 *
 *   const dispose = forwardSignals(child, () => void child.stop("signal", { firstSignal: null }));
 *
 * `firstSignal: null` because the signal itself was already forwarded; `stop` is idempotent, so a
 * second Ctrl-C is forwarded again and the stop already under way simply continues.
 */

export const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"] as const;
export type ForwardedSignal = (typeof FORWARDED_SIGNALS)[number];

/** Forwarded signals that also request a stop. */
export const STOP_SIGNALS: ReadonlySet<ForwardedSignal> = new Set(["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"]);

export interface SignalTarget {
  signal(signal: NodeJS.Signals): boolean;
}

/**
 * Installs the handlers and returns a disposer that removes them. While they are installed Node's
 * defaults are off: SIGINT/SIGTERM no longer end leader-run and SIGUSR1 no longer starts the
 * inspector, so the stop is always orderly. `onStopRequest` runs after the signal was forwarded,
 * once per received signal.
 */
export function forwardSignals(target: SignalTarget, onStopRequest: (signal: NodeJS.Signals) => void): () => void {
  const handlers = FORWARDED_SIGNALS.map((sig) => {
    const handler = (): void => {
      target.signal(sig);
      if (STOP_SIGNALS.has(sig)) onStopRequest(sig);
    };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  let disposed = false;
  return () => {
    if (disposed) return;
    disposed = true;
    for (const [sig, handler] of handlers) process.off(sig, handler);
  };
}
