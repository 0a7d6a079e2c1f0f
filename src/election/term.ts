/**
 * The timing arithmetic of one term of leadership, in one place, so the elector, the CLI's guard and
 * its kill grace cannot disagree about when leadership ends and when a successor may start.
 *
 * All instants are monotonic milliseconds on the elector's clock (`Clock.now()`).
 */

/**
 * The lease duration followers actually wait: the record stores whole seconds (`leaseDurationSeconds`,
 * truncated like client-go's `int(LD / time.Second)`), so a configured 5.9s is seen as 5s by every
 * other process, client-go included. Every safety check must use this value, never the configured one.
 */
export function effectiveLeaseDurationMs(leaseDurationMs: number): number {
  return Math.floor(leaseDurationMs / 1000) * 1000;
}

/**
 * What a kill budget keeps back: clock-rate differences between hosts over the lease duration
 * (`KILL_MARGIN_RATIO`) and the time the kill itself takes to be certain (`KILL_MARGIN_MIN_MS`).
 */
export const KILL_MARGIN_MIN_MS = 100;
export const KILL_MARGIN_RATIO = 0.02;

/** The default safety margin of `killBudgetMs` for a given effective lease duration. */
export function defaultKillMarginMs(effectiveLeaseMs: number): number {
  return Math.max(KILL_MARGIN_MIN_MS, effectiveLeaseMs * KILL_MARGIN_RATIO);
}

/** A read-only snapshot of a term, as `LeaderElector.currentTerm()` returns it. */
export interface TermView {
  /** `leaderTransitions` of this term: the fencing token. */
  readonly term: number;
  /** True while we lead in this term; false once it ended (the view then describes the last term). */
  readonly active: boolean;
  /** When the write that acquired the term was sent. */
  readonly acquiredAt: number;
  /** When the last successful write (acquire or renew) of this term was sent. */
  readonly lastRenewSent: number;
  /** The configured lease duration. */
  readonly leaseDurationMs: number;
  /** The lease duration followers see: whole seconds of the configured one. */
  readonly effectiveLeaseDurationMs: number;
  readonly renewDeadlineMs: number;
  /** We stop leading at this instant at the latest: `lastRenewSent + renewDeadline`. */
  readonly stopDeadline: number;
  /** The earliest instant another process may start leading: `lastRenewSent + effective lease duration`. */
  readonly successorEarliestStart: number;
  /** The default margin `killBudgetMs` keeps back from `successorEarliestStart`. */
  readonly killMarginMs: number;
  /**
   * Milliseconds left at `now` to have the guarded work certainly dead: time until
   * `successorEarliestStart` minus `marginMs` (default `killMarginMs`); never negative. A late stop
   * shortens its grace to this.
   */
  killBudgetMs(now: number, marginMs?: number): number;
}

/** One term, owned by the elector: created on acquisition, moved forward by every successful renewal. */
export class Term {
  readonly effectiveLeaseDurationMs: number;
  readonly killMarginMs: number;
  private renewSent: number;
  private ended = false;

  constructor(
    readonly term: number,
    readonly acquiredAt: number,
    readonly leaseDurationMs: number,
    readonly renewDeadlineMs: number,
  ) {
    this.renewSent = acquiredAt;
    this.effectiveLeaseDurationMs = effectiveLeaseDurationMs(leaseDurationMs);
    this.killMarginMs = defaultKillMarginMs(this.effectiveLeaseDurationMs);
  }

  get lastRenewSent(): number {
    return this.renewSent;
  }

  get active(): boolean {
    return !this.ended;
  }

  get stopDeadline(): number {
    return this.renewSent + this.renewDeadlineMs;
  }

  get successorEarliestStart(): number {
    return this.renewSent + this.effectiveLeaseDurationMs;
  }

  /** A successful write of this term was sent at `sentAt`; an older answer never moves the deadlines back. */
  renewed(sentAt: number): void {
    if (sentAt > this.renewSent) this.renewSent = sentAt;
  }

  end(): void {
    this.ended = true;
  }

  killBudgetMs(now: number, marginMs: number = this.killMarginMs): number {
    return Math.max(0, this.successorEarliestStart - marginMs - now);
  }

  view(): Readonly<TermView> {
    const snapshot: TermView = {
      term: this.term,
      active: this.active,
      acquiredAt: this.acquiredAt,
      lastRenewSent: this.lastRenewSent,
      leaseDurationMs: this.leaseDurationMs,
      effectiveLeaseDurationMs: this.effectiveLeaseDurationMs,
      renewDeadlineMs: this.renewDeadlineMs,
      stopDeadline: this.stopDeadline,
      successorEarliestStart: this.successorEarliestStart,
      killMarginMs: this.killMarginMs,
      // A snapshot: the budget counts from the deadlines as they were when the view was taken.
      killBudgetMs: (now: number, marginMs: number = snapshot.killMarginMs) =>
        Math.max(0, snapshot.successorEarliestStart - marginMs - now),
    };
    return Object.freeze(snapshot);
  }
}
