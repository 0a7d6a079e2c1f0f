/**
 * Shared helpers for the Kubernetes election tests: candidates (LeaderElector + Lease lock) that
 * record when they lead, and an overlap check.
 */
import assert from "node:assert/strict";
import { LeaderElector } from "../../../src/election/elector.js";
import type { ElectionEvent } from "../../../src/election/events.js";
import type { ResourceLock } from "../../../src/election/lock.js";
import { openKubernetesLock } from "../../../src/locks/kubernetes/index.js";
import type { KubernetesLockSpec } from "../../../src/locks/url.js";

export const K8S_SPEC: KubernetesLockSpec = { kind: "kubernetes", url: "kubernetes:", redacted: "kubernetes:" };

export interface Interval {
  who: string;
  start: number;
  end?: number;
  term?: number;
}

export interface Timing {
  leaseDuration: number;
  renewDeadline: number;
  retryPeriod: number;
}

export type TimedEvent = ElectionEvent & { at: number; who: string };

export class Candidate {
  readonly events: TimedEvent[] = [];
  elector!: LeaderElector;
  lock!: ResourceLock;
  private controller: AbortController | undefined;
  private running: Promise<void> | undefined;

  private constructor(
    readonly id: string,
    private readonly intervals: Interval[],
  ) {}

  static async create(
    id: string,
    options: { name: string; kubeconfig: string; timing: Timing; intervals: Interval[]; releaseOnCancel?: boolean; namespace?: string },
  ): Promise<Candidate> {
    const c = new Candidate(id, options.intervals);
    c.lock = await openKubernetesLock(K8S_SPEC, {
      name: options.name,
      identity: id,
      leaseDurationMs: options.timing.leaseDuration,
      renewDeadlineMs: options.timing.renewDeadline,
      kubeconfig: options.kubeconfig,
      namespace: options.namespace,
      env: {},
      onWarning: () => undefined,
    });
    c.elector = new LeaderElector({
      lock: c.lock,
      ...options.timing,
      releaseOnCancel: options.releaseOnCancel ?? true,
      name: options.name,
      callbacks: {
        onStartedLeading: async (signal) => {
          const interval: Interval = { who: id, start: performance.now(), term: c.elector.term() };
          c.intervals.push(interval);
          // The end is stamped in the abort listener itself: a stamp taken after an await measures the
          // event loop's backlog on a loaded machine, not when the elector told the work to stop.
          await new Promise<void>((resolve) => {
            const stop = (): void => {
              interval.end = performance.now();
              resolve();
            };
            if (signal.aborted) stop();
            else signal.addEventListener("abort", stop, { once: true });
          });
        },
        onStoppedLeading: () => undefined,
      },
      onEvent: (e) => c.events.push({ ...e, at: performance.now(), who: id }),
    });
    return c;
  }

  /** Starts one campaign (ends when cancelled or leadership is lost). */
  start(): void {
    assert.equal(this.running, undefined, `${this.id} is already running`);
    this.controller = new AbortController();
    this.running = this.elector.run(this.controller.signal).finally(() => {
      this.running = undefined;
    });
  }

  /** Cancels the campaign (a clean stop: releases if leading) and waits for it to end. */
  async stop(): Promise<void> {
    this.controller?.abort();
    await this.running;
  }

  get isRunning(): boolean {
    return this.running !== undefined;
  }

  /** Resolves when the current campaign ends by itself. */
  async ended(): Promise<void> {
    await this.running;
  }

  async close(): Promise<void> {
    await this.stop();
    await this.lock.close?.();
  }

  last(type: ElectionEvent["type"]): TimedEvent | undefined {
    return this.events.filter((e) => e.type === type).at(-1);
  }
}

/** Polls `predicate` every 20 ms until it holds or `timeoutMs` passes. */
export async function waitFor<T>(predicate: () => T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const v = predicate();
    if (v) return v;
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** No two leadership intervals overlap (intervals still open count as lasting until now). */
export function assertNoOverlap(intervals: Array<{ who: string; start: number; end?: number }>): void {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    const prevEnd = prev.end ?? performance.now();
    assert.ok(
      cur.start >= prevEnd,
      `${cur.who} started leading ${(prevEnd - cur.start).toFixed(0)} ms before ${prev.who} stopped: ${JSON.stringify(sorted)}`,
    );
  }
}
