/**
 * client-go's `HealthzAdaptor`: a leader whose renew machinery is wedged (hung request, deadlock, an
 * elector that exited while the process kept running) reports unhealthy so a supervisor restarts it.
 */
export interface LeaderHealthChecker {
  check(maxTolerableExpiredLeaseMs: number): Error | undefined;
}

export class HealthzAdaptor {
  private elector: LeaderHealthChecker | undefined;

  constructor(private readonly timeoutMs: number) {}

  /** Served by Kubernetes components as `/healthz/leaderElection`. */
  name(): string {
    return "leaderElection";
  }

  /** Healthy (`undefined`) until an elector is attached, as in client-go. */
  check(_request?: unknown): Error | undefined {
    return this.elector?.check(this.timeoutMs);
  }

  setLeaderElection(elector: LeaderHealthChecker): void {
    this.elector = elector;
  }
}

export function newLeaderHealthzAdaptor(timeoutMs: number): HealthzAdaptor {
  return new HealthzAdaptor(timeoutMs);
}
