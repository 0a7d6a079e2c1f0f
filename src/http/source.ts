import type { LeaderElector } from "../election/elector.js";
import type { LeaderElectionRecord } from "../election/record.js";

/**
 * What the HTTP endpoints read. The server knows nothing about backends or the child: the CLI hands it
 * this view of the election, and tests hand it a fake.
 */
export interface LeaderStatusSource {
  /** The election name (metric label `name`, client-go `ElectionConfig.Name`). */
  readonly name: string;
  /** This process's identity. */
  readonly identity: string;
  /** True from acquisition until this process stops leading. */
  isLeading(): boolean;
  /** The holder as last observed; `""` when nobody holds the lease or nothing was read yet. */
  leader(): string;
  /** Our term (fencing token) while we lead; otherwise the observed holder's, when known. */
  term(): number | undefined;
  /** The lease record as last observed, `undefined` before the first read. */
  record(): LeaderElectionRecord | undefined;
  /** The HealthzAdaptor's verdict: an `Error` once leadership has not been renewed for too long. */
  healthCheck(): Error | undefined;
}

/** The part of `LeaderElector` the status source reads. */
export type ElectorView = Pick<LeaderElector, "isLeading" | "getLeader" | "term" | "observed">;

/** client-go's `HealthzAdaptor` as seen from here (`newLeaderHealthzAdaptor(timeoutMs)`). */
export interface HealthChecker {
  check(): Error | undefined;
}

export interface ElectorStatusOptions {
  name: string;
  identity: string;
  elector: ElectorView;
  /** The adaptor the CLI attached the elector to with `setLeaderElection`. */
  healthz: HealthChecker;
}

/** A `LeaderStatusSource` over a live `LeaderElector` and its `HealthzAdaptor`. */
export function electorStatusSource(options: ElectorStatusOptions): LeaderStatusSource {
  const { elector, healthz } = options;
  const record = (): LeaderElectionRecord | undefined => {
    const observed = elector.observed();
    // The elector starts from an empty record; a real read always carries a renew time.
    return observed.holderIdentity === "" && observed.renewTime === null ? undefined : observed;
  };
  return {
    name: options.name,
    identity: options.identity,
    isLeading: () => elector.isLeading(),
    leader: () => elector.getLeader(),
    term: () => (elector.isLeading() ? elector.term() : record()?.leaderTransitions),
    record,
    healthCheck: () => healthz.check(),
  };
}
