/**
 * client-go's metrics hooks (`leaderelection.SetProvider`): `leader_election_master_status{name}` and
 * `leader_election_slowpath_total{name}`. The core only calls these; src/http turns them into Prometheus.
 */
export interface MetricsProvider {
  leaderOn(name: string): void;
  leaderOff(name: string): void;
  slowpathExercised(name: string): void;
}

const noop: MetricsProvider = { leaderOn() {}, leaderOff() {}, slowpathExercised() {} };
let globalProvider: MetricsProvider | undefined;

/** Like client-go: the first provider set wins, later calls are ignored. */
export function setMetricsProvider(provider: MetricsProvider): void {
  globalProvider ??= provider;
}

export function currentMetricsProvider(): MetricsProvider {
  return globalProvider ?? noop;
}
