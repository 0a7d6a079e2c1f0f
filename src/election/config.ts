import type { Clock } from "./clock.js";
import type { ResourceLock } from "./lock.js";
import type { HealthzAdaptor } from "./healthz.js";
import type { MetricsProvider } from "./metrics.js";
import type { ElectionEvent } from "./events.js";
import { effectiveLeaseDurationMs } from "./term.js";

/** client-go's `JitterFactor`: acquire attempts are spaced uniformly in [RP, RP·(1+1.2)). */
export const JITTER_FACTOR = 1.2;

export interface LeaderCallbacks {
  /**
   * Called (asynchronously) once leadership is acquired. `signal` aborts when leadership ends; the
   * elector waits for the returned promise to settle before it releases the lease, so guarded work
   * must stop when the signal aborts.
   */
  onStartedLeading(signal: AbortSignal): void | Promise<void>;
  /** Called once when `run` ends, whether or not this process ever led (as in client-go). */
  onStoppedLeading(): void;
  /** Called asynchronously once per distinct observed holder, including ourselves and `""`. */
  onNewLeader?(identity: string): void;
}

export interface ElectionConfig {
  lock: ResourceLock;
  /** Milliseconds a non-leader waits after the last observed change before it may take over. */
  leaseDuration: number;
  /** Milliseconds after the last successful renewal (from when it was sent) at which the leader gives up. */
  renewDeadline: number;
  /** Milliseconds between attempts. */
  retryPeriod: number;
  callbacks: LeaderCallbacks;
  /** Wired to the elector by `runOrDie` only, as in client-go. */
  watchDog?: HealthzAdaptor;
  /** Informational: metric label and `check()` message. */
  name?: string;
  /** Release the lease when leadership ends, once the work has settled. */
  releaseOnCancel?: boolean;
  clock?: Clock;
  /** Overrides the global provider set with `setMetricsProvider`. */
  metrics?: MetricsProvider;
  /** Structured events for logs; never required for correctness. */
  onEvent?: (event: ElectionEvent) => void;
}

/** Thrown by `new LeaderElector(config)` with client-go's message, in client-go's order. */
export class ElectionConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ElectionConfigError";
  }
}

/**
 * client-go's `NewLeaderElector` checks, same order and texts; then leader-run's stricter ones: a lease
 * shorter than a second cannot be stored (the Lease API keeps whole seconds > 0), and the lease duration
 * followers see (its whole seconds) must still exceed the renew deadline.
 */
export function validateElectionConfig(config: ElectionConfig): void {
  const ld = config.leaseDuration;
  const rd = config.renewDeadline;
  const rp = config.retryPeriod;
  for (const [field, v] of [["leaseDuration", ld], ["renewDeadline", rd], ["retryPeriod", rp]] as const) {
    if (typeof v !== "number" || Number.isNaN(v)) {
      throw new ElectionConfigError(`${field} must be a number of milliseconds, got ${String(v)}`);
    }
  }
  if (ld <= rd) throw new ElectionConfigError("leaseDuration must be greater than renewDeadline");
  // Go truncates 1.2·RP to whole nanoseconds; in milliseconds that is 6 decimal places.
  if (rd <= Math.trunc(JITTER_FACTOR * rp * 1e6) / 1e6) {
    throw new ElectionConfigError("renewDeadline must be greater than retryPeriod*JitterFactor");
  }
  if (ld < 1e-6) throw new ElectionConfigError("leaseDuration must be greater than zero");
  if (rd < 1e-6) throw new ElectionConfigError("renewDeadline must be greater than zero");
  if (rp < 1e-6) throw new ElectionConfigError("retryPeriod must be greater than zero");
  const callbacks = config.callbacks as Partial<LeaderCallbacks> | undefined;
  if (typeof callbacks?.onStartedLeading !== "function") {
    throw new ElectionConfigError("OnStartedLeading callback must not be nil");
  }
  if (typeof callbacks.onStoppedLeading !== "function") {
    throw new ElectionConfigError("OnStoppedLeading callback must not be nil");
  }
  if (config.lock === null || config.lock === undefined) throw new ElectionConfigError("Lock must not be nil.");
  if (config.lock.identity() === "") throw new ElectionConfigError("Lock identity is empty");
  if (ld < 1000) {
    throw new ElectionConfigError(
      `leaseDuration must be at least 1s (got ${ld}ms): lease records store whole seconds, so raise leaseDuration to 1s or more`,
    );
  }
  // Followers wait the record's whole seconds, not the configured value: 5.9s is 5s to everyone else.
  const effective = effectiveLeaseDurationMs(ld);
  if (effective <= rd) {
    throw new ElectionConfigError(
      `leaseDuration must be greater than renewDeadline in whole seconds: lease records store whole seconds, so leaseDuration ${ld}ms is seen by other processes as ${effective}ms, which is not greater than renewDeadline ${rd}ms; raise leaseDuration to ${Math.floor(rd / 1000) * 1000 + 1000}ms or lower renewDeadline below ${effective}ms`,
    );
  }
}
