/**
 * In-process candidates on the etcd lock (test/support/elector-candidate.ts), each with its own
 * `EtcdLock` (own gRPC channels).
 */
import { openEtcdLock, type EtcdLock, type EtcdLockOptions } from "../../src/locks/etcd/index.js";
import { ElectorCandidate, type Ledger, type Timings } from "../support/elector-candidate.js";

export { Ledger, delay, until } from "../support/elector-candidate.js";
export type { Timings } from "../support/elector-candidate.js";

export class EtcdCandidate extends ElectorCandidate<EtcdLock> {
  constructor(
    readonly url: string,
    name: string,
    id: string,
    timings: Timings,
    ledger: Ledger,
    readonly lockOptions: Partial<EtcdLockOptions> = {},
  ) {
    super(
      () =>
        openEtcdLock(url, {
          name,
          identity: id,
          leaseDurationMs: timings.leaseDuration,
          renewDeadlineMs: timings.renewDeadline,
          ...lockOptions,
        }),
      name,
      id,
      timings,
      ledger,
    );
  }
}
