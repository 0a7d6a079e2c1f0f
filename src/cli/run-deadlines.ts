import type { GuardDeadline } from "../child/guard.js";

/**
 * The safety arithmetic of one successful lease write, in `performance.now()` ms. One function on
 * purpose: the election core's Term object is to take it over, and this is what it swaps out.
 */
export interface LeaseDeadlines extends GuardDeadline {
  /** The earliest moment any other candidate may take the lease over. */
  successorEarliest: number;
}

/** How long before `successorEarliest` the group must already be SIGKILLed (kill, exit, a late timer). */
export const KILL_MARGIN_MS = 200;

export interface DeadlineTimings {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  killGraceMs: number;
}

/**
 * From the moment the successful write was sent: we stop leading at `sentAt + renewDeadline`, and
 * followers count the record's whole seconds of lease duration from when they saw it, which is no
 * earlier than `sentAt`.
 */
export function leaseDeadlines(sentAt: number, t: DeadlineTimings): LeaseDeadlines {
  const effectiveLeaseMs = Math.floor(t.leaseDurationMs / 1000) * 1000;
  const successorEarliest = sentAt + effectiveLeaseMs;
  const killAt = Math.min(sentAt + t.renewDeadlineMs + t.killGraceMs, successorEarliest - KILL_MARGIN_MS);
  const signalAt = Math.min(sentAt + t.renewDeadlineMs, killAt);
  return { signalAt, killAt, successorEarliest };
}

/** The grace a stop starting at `now` may still use: down to 0, an immediate SIGKILL. */
export function safeGraceMs(deadlines: LeaseDeadlines | undefined, killGraceMs: number, now: number): number {
  if (deadlines === undefined) return killGraceMs;
  return Math.max(0, Math.min(killGraceMs, deadlines.successorEarliest - KILL_MARGIN_MS - now));
}
