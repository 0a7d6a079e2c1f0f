/**
 * In-process candidates on the Redis lock (test/support/elector-candidate.ts), each with its own
 * `RedisLock` and connections.
 */
import { openRedisLock, type RedisLock, type RedisLockOptions } from "../../src/locks/redis/index.js";
import { ElectorCandidate, type CandidateOptions as BaseOptions, type Ledger, type Timings } from "../support/elector-candidate.js";

export { Ledger, delay, leaderOf, recordLeadership, startAll, until } from "../support/elector-candidate.js";
export type { Interval, Timings } from "../support/elector-candidate.js";

export interface CandidateOptions extends BaseOptions {
  lock?: Partial<RedisLockOptions>;
}

export class Candidate extends ElectorCandidate<RedisLock> {
  constructor(
    readonly url: string,
    name: string,
    id: string,
    timings: Timings,
    ledger: Ledger,
    readonly options: CandidateOptions = {},
  ) {
    super(
      () =>
        openRedisLock(url, {
          name,
          identity: id,
          leaseDurationMs: timings.leaseDuration,
          renewDeadlineMs: timings.renewDeadline,
          ...options.lock,
        }),
      name,
      id,
      timings,
      ledger,
      options,
    );
  }
}
