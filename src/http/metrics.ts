import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { ElectionEvent, LostReason } from "../election/events.js";
import type { MetricsProvider } from "../election/metrics.js";

/** What `/metrics` serves; `LeaderRunMetrics` is the real one. */
export interface MetricsExposition {
  readonly contentType: string;
  exposition(): Promise<string>;
}

export interface LeaderRunMetricsOptions {
  /** The election name: the `name` label of every metric (client-go's `ElectionConfig.Name`). */
  name: string;
  /** Defaults to a fresh registry; never prom-client's global one, so embedding apps keep theirs. */
  registry?: Registry;
  /** Node process metrics (`process_*`, `nodejs_*`); default true. */
  defaultMetrics?: boolean;
  /** Wall-clock milliseconds for the last-renew timestamp; injectable for tests. */
  wallNow?: () => number;
}

const LOST_REASONS: readonly LostReason[] = ["deadline", "foreign_holder", "cancelled"];

// Renewals are one or two round trips to the backend; the top buckets cover a renew deadline of 10s.
const RENEW_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Prometheus metrics of one leader-run process, on a dedicated registry.
 *
 * - As the elector's `MetricsProvider` it keeps client-go's `leader_election_master_status{name}` and
 *   `leader_election_slowpath_total{name}` (same names and help, so existing dashboards and alerts work).
 * - `onElectionEvent` turns `ElectionEvent`s into the `leader_run_*` election metrics.
 * - `childStarted`, `childExited`, `childRestarted` are called by the CLI's supervisor.
 */
export class LeaderRunMetrics implements MetricsProvider, MetricsExposition {
  readonly registry: Registry;
  readonly name: string;
  private readonly wallNow: () => number;

  private readonly masterStatus: Gauge<"name">;
  private readonly slowpath: Counter<"name">;
  private readonly transitions: Counter<"name">;
  private readonly acquisitions: Counter<"name">;
  private readonly losses: Counter<"name" | "reason">;
  private readonly renewFailures: Counter<"name">;
  private readonly renewDuration: Histogram<"name">;
  private readonly lastRenew: Gauge<"name">;
  private readonly termGauge: Gauge<"name">;
  private readonly childRunning: Gauge<"name">;
  private readonly childRestarts: Counter<"name">;
  private readonly childExits: Counter<"name" | "code">;

  constructor(options: LeaderRunMetricsOptions) {
    this.name = options.name;
    this.registry = options.registry ?? new Registry();
    this.wallNow = options.wallNow ?? Date.now;
    const registers = [this.registry];
    const name = ["name"] as const;

    // component-base marks these ALPHA and prints the level in the help text; we keep it identical.
    this.masterStatus = new Gauge({
      name: "leader_election_master_status",
      help:
        "[ALPHA] Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. " +
        "'name' is the string used to identify the lease. Please make sure to group by name.",
      labelNames: name,
      registers,
    });
    this.slowpath = new Counter({
      name: "leader_election_slowpath_total",
      help:
        "[ALPHA] Total number of slow path exercised in renewing leader leases. " +
        "'name' is the string used to identify the lease. Please make sure to group by name.",
      labelNames: name,
      registers,
    });

    this.transitions = new Counter({
      name: "leader_run_leader_transitions_total",
      help: "Changes of the lease holder observed by this process (the first holder it sees counts as one; a release counts).",
      labelNames: name,
      registers,
    });
    this.acquisitions = new Counter({
      name: "leader_run_acquisitions_total",
      help: "Times this process acquired the lease (each acquisition starts a new term).",
      labelNames: name,
      registers,
    });
    this.losses = new Counter({
      name: "leader_run_losses_total",
      help: "Times this process stopped leading, by reason: deadline (renewal failed), foreign_holder (taken over or force-released), cancelled (clean stop).",
      labelNames: ["name", "reason"] as const,
      registers,
    });
    this.renewFailures = new Counter({
      name: "leader_run_renew_failures_total",
      help: "Failed renewal attempts while leading (each is retried until the renew deadline).",
      labelNames: name,
      registers,
    });
    this.renewDuration = new Histogram({
      name: "leader_run_renew_duration_seconds",
      help: "Latency of successful lease renewals.",
      labelNames: name,
      buckets: RENEW_BUCKETS,
      registers,
    });
    this.lastRenew = new Gauge({
      name: "leader_run_last_renew_timestamp_seconds",
      help: "Unix time of this process's last successful acquisition or renewal; 0 before the first.",
      labelNames: name,
      registers,
    });
    this.termGauge = new Gauge({
      name: "leader_run_term",
      help: "Term (lease leaderTransitions, the fencing token) of this process's current or last leadership; absent before the first.",
      labelNames: name,
      registers,
    });
    this.childRunning = new Gauge({
      name: "leader_run_child_running",
      help: "1 while the guarded command runs, 0 otherwise.",
      labelNames: name,
      registers,
    });
    this.childRestarts = new Counter({
      name: "leader_run_child_restarts_total",
      help: "Restarts of the guarded command by the --restart policy.",
      labelNames: name,
      registers,
    });
    this.childExits = new Counter({
      name: "leader_run_child_exits_total",
      help: "Exits of the guarded command by exit status (128+N when killed by signal N).",
      labelNames: ["name", "code"] as const,
      registers,
    });

    // Every series exists from the start, so rate() and absent() behave before the first event.
    const labels = { name: this.name };
    this.masterStatus.set(labels, 0);
    this.slowpath.inc(labels, 0);
    for (const counter of [this.transitions, this.acquisitions, this.renewFailures, this.childRestarts]) {
      counter.inc(labels, 0);
    }
    for (const reason of LOST_REASONS) this.losses.inc({ name: this.name, reason }, 0);
    this.lastRenew.set(labels, 0);
    // No term series until the first acquisition: terms start at 0, so 0 cannot mean "none".
    this.childRunning.set(labels, 0);
    this.renewDuration.zero(labels);

    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  // MetricsProvider (client-go's hooks, called by the elector with its configured name).

  leaderOn(name: string): void {
    this.masterStatus.set({ name }, 1);
  }

  leaderOff(name: string): void {
    this.masterStatus.set({ name }, 0);
  }

  slowpathExercised(name: string): void {
    this.slowpath.inc({ name });
  }

  /** Pass as (or call from) the elector's `onEvent`. */
  readonly onElectionEvent = (event: ElectionEvent): void => {
    const labels = { name: this.name };
    switch (event.type) {
      case "acquired":
        this.acquisitions.inc(labels);
        this.termGauge.set(labels, event.term);
        this.lastRenew.set(labels, this.wallNow() / 1000);
        break;
      case "renewed":
        this.renewDuration.observe(labels, event.latencyMs / 1000);
        this.lastRenew.set(labels, this.wallNow() / 1000);
        break;
      case "renew_failed":
        this.renewFailures.inc(labels);
        break;
      case "lost":
        this.losses.inc({ name: this.name, reason: event.reason });
        break;
      case "new_leader":
        this.transitions.inc(labels);
        break;
      default:
        break;
    }
  };

  // The guarded command, reported by the CLI's supervisor.

  childStarted(): void {
    this.childRunning.set({ name: this.name }, 1);
  }

  /** `code` is the exit status leader-run reports for the child: its code, or 128+N for signal N. */
  childExited(code: number): void {
    this.childRunning.set({ name: this.name }, 0);
    this.childExits.inc({ name: this.name, code: String(code) });
  }

  childRestarted(): void {
    this.childRestarts.inc({ name: this.name });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  exposition(): Promise<string> {
    return this.registry.metrics();
  }
}
