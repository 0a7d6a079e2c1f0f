import type { GuardDeadline } from "../child/guard.js";
import { defaultKillMarginMs } from "../election/term.js";

/**
 * The safety arithmetic of one successful lease write, in `performance.now()` ms. One function on
 * purpose: the election core's Term object is to take it over, and this is what it swaps out.
 */
export interface LeaseDeadlines extends GuardDeadline {
  /** The earliest moment any other candidate may take the lease over. */
  successorEarliest: number;
  /** What is kept back before `successorEarliest` (killMarginMs). */
  marginMs: number;
}

/** The least time before `successorEarliest` the group must already be SIGKILLed (kill, exit, a late timer). */
export const KILL_MARGIN_MS = 200;

/** How long after leader-run's own stop the guard sends the kill signal if nobody extended it. */
export const GUARD_SIGNAL_SLACK_MS = 250;

/**
 * The margin actually kept: at least KILL_MARGIN_MS, and at least the election core's allowance for
 * clock-rate differences between hosts (term.ts: 2% of the lease), so the CLI never aims closer to the
 * successor's start than the Term's own kill budget does.
 */
export function killMarginMs(effectiveLeaseMs: number): number {
  return Math.max(KILL_MARGIN_MS, defaultKillMarginMs(effectiveLeaseMs));
}

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
  const killAt = Math.min(sentAt + t.renewDeadlineMs + t.killGraceMs, successorEarliest - killMarginMs(effectiveLeaseMs));
  // The guard is the backstop: a healthy leader-run sends the kill signal itself at sentAt + RD, so the
  // guard's comes a little later (never after its SIGKILL), and the command does not get it twice.
  const signalAt = Math.min(sentAt + t.renewDeadlineMs + GUARD_SIGNAL_SLACK_MS, killAt);
  return { signalAt, killAt, successorEarliest, marginMs: killMarginMs(effectiveLeaseMs) };
}

/** The grace a stop starting at `now` may still use: down to 0, an immediate SIGKILL. */
export function safeGraceMs(deadlines: LeaseDeadlines | undefined, killGraceMs: number, now: number): number {
  if (deadlines === undefined) return killGraceMs;
  return Math.max(0, Math.min(killGraceMs, deadlines.successorEarliest - deadlines.marginMs - now));
}
