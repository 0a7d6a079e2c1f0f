/**
 * In-process candidates on the etcd lock: each runs a real `LeaderElector` on its own `EtcdLock`
 * (own gRPC channels) and records its leadership intervals in a shared ledger, so tests can check
 * that no two leaders ever overlap.
 */
import { LeaderElector } from "../../src/election/elector.js";
import type { ElectionEvent } from "../../src/election/events.js";
import { openEtcdLock, type EtcdLock, type EtcdLockOptions } from "../../src/locks/etcd/index.js";
import { recordLeadership, type Interval, type Ledger, type Timings } from "../redis/harness.js";

export { Ledger, delay, until } from "../redis/harness.js";
export type { Timings } from "../redis/harness.js";

export class EtcdCandidate {
  readonly events: { at: number; event: ElectionEvent }[] = [];
  lock: EtcdLock | undefined;
  current: Interval | undefined;
  private readonly stopper = new AbortController();
  private loop: Promise<void> | undefined;

  constructor(
    readonly url: string,
    readonly name: string,
    readonly id: string,
    readonly timings: Timings,
    readonly ledger: Ledger,
    readonly lockOptions: Partial<EtcdLockOptions> = {},
  ) {}

  async start(): Promise<this> {
    const lock = await openEtcdLock(this.url, {
      name: this.name,
      identity: this.id,
      leaseDurationMs: this.timings.leaseDuration,
      renewDeadlineMs: this.timings.renewDeadline,
      ...this.lockOptions,
    });
    this.lock = lock;
    const elector: LeaderElector = new LeaderElector({
      lock,
      ...this.timings,
      releaseOnCancel: true,
      name: this.name,
      callbacks: {
        onStartedLeading: recordLeadership(this.ledger, this.id, () => elector.term(), () => lock.fencingToken(), (interval) => {
          this.current = interval;
        }),
        onStoppedLeading: () => undefined,
      },
      onEvent: (event) => this.events.push({ at: performance.now(), event }),
    });
    const signal = this.stopper.signal;
    this.loop = (async () => {
      while (!signal.aborted) await elector.run(signal);
    })();
    return this;
  }

  get leading(): boolean {
    return this.current !== undefined;
  }

  /** Cancels the campaign (releasing if leading), waits for it to end, closes the channels. */
  async stop(): Promise<void> {
    this.stopper.abort();
    await this.loop;
    await this.lock?.close();
  }
}
