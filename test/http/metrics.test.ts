import { test } from "node:test";
import assert from "node:assert/strict";
import { register as globalRegistry } from "prom-client";
import { LeaderRunMetrics } from "../../src/http/metrics.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import { parsePrometheusText, valueOf, PromTextError } from "./prom-text.js";

const NAME = "nightly-report";
const L = { name: NAME };

function record(holder: string, term: number): LeaderElectionRecord {
  const t = new Date("2025-01-01T00:00:00.000Z");
  return { holderIdentity: holder, leaseDurationSeconds: 15, acquireTime: t, renewTime: t, leaderTransitions: term };
}

async function scrape(metrics: LeaderRunMetrics): Promise<ReturnType<typeof parsePrometheusText>> {
  return parsePrometheusText(await metrics.exposition());
}

test("every series exists at zero before the first event", async () => {
  const m = new LeaderRunMetrics({ name: NAME, defaultMetrics: false });
  const f = await scrape(m);
  assert.equal(valueOf(f, "leader_election_master_status", L), 0);
  assert.equal(valueOf(f, "leader_election_slowpath_total", L), 0);
  assert.equal(valueOf(f, "leader_run_acquisitions_total", L), 0);
  for (const reason of ["deadline", "foreign_holder", "cancelled"]) {
    assert.equal(valueOf(f, "leader_run_losses_total", { ...L, reason }), 0);
  }
  assert.equal(valueOf(f, "leader_run_renew_duration_seconds_count", L), 0);
  assert.equal(valueOf(f, "leader_run_last_renew_timestamp_seconds", L), 0);
  assert.equal(valueOf(f, "leader_run_child_running", L), 0);
  assert.equal(valueOf(f, "leader_run_term", L), undefined, "no term before the first acquisition");
});

test("client-go metrics keep client-go's names, types and help texts", async () => {
  const m = new LeaderRunMetrics({ name: NAME, defaultMetrics: false });
  const f = await scrape(m);
  const status = f.get("leader_election_master_status");
  assert.equal(status?.type, "gauge");
  assert.match(status?.help ?? "", /^\[ALPHA\] Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master\./);
  const slow = f.get("leader_election_slowpath_total");
  assert.equal(slow?.type, "counter");
  assert.match(slow?.help ?? "", /^\[ALPHA\] Total number of slow path exercised in renewing leader leases\./);
});

test("after an acquisition and renewals the metrics show a leader with its term and renew latency", async () => {
  let wall = 1_700_000_000_000;
  const m = new LeaderRunMetrics({ name: NAME, defaultMetrics: false, wallNow: () => wall });
  m.onElectionEvent({ type: "new_leader", lock: "file:/x", identity: "other" });
  m.leaderOn(NAME);
  m.onElectionEvent({ type: "acquired", lock: "file:/x", term: 7, record: record("me", 7), sentAt: 0 });
  m.onElectionEvent({ type: "new_leader", lock: "file:/x", identity: "me" });
  wall += 2_000;
  m.onElectionEvent({ type: "renewed", lock: "file:/x", latencyMs: 30, slowPath: false, sentAt: 0 });
  wall += 2_000;
  m.slowpathExercised(NAME);
  m.onElectionEvent({ type: "renewed", lock: "file:/x", latencyMs: 300, slowPath: true, sentAt: 0 });
  m.onElectionEvent({ type: "renew_failed", lock: "file:/x", error: new Error("timeout"), deadlineInMs: 5000 });

  const f = await scrape(m);
  assert.equal(valueOf(f, "leader_election_master_status", L), 1);
  assert.equal(valueOf(f, "leader_election_slowpath_total", L), 1);
  assert.equal(valueOf(f, "leader_run_acquisitions_total", L), 1);
  assert.equal(valueOf(f, "leader_run_leader_transitions_total", L), 2);
  assert.equal(valueOf(f, "leader_run_term", L), 7);
  assert.equal(valueOf(f, "leader_run_renew_failures_total", L), 1);
  assert.equal(valueOf(f, "leader_run_last_renew_timestamp_seconds", L), 1_700_000_004);
  assert.equal(valueOf(f, "leader_run_renew_duration_seconds_count", L), 2);
  assert.ok(Math.abs((valueOf(f, "leader_run_renew_duration_seconds_sum", L) ?? 0) - 0.33) < 1e-9);
  assert.equal(valueOf(f, "leader_run_renew_duration_seconds_bucket", { ...L, le: "0.025" }), 0);
  assert.equal(valueOf(f, "leader_run_renew_duration_seconds_bucket", { ...L, le: "0.05" }), 1);
  assert.equal(valueOf(f, "leader_run_renew_duration_seconds_bucket", { ...L, le: "0.5" }), 2);
  assert.equal(valueOf(f, "leader_run_renew_duration_seconds_bucket", { ...L, le: "+Inf" }), 2);
  for (const reason of ["deadline", "foreign_holder", "cancelled"]) {
    assert.equal(valueOf(f, "leader_run_losses_total", { ...L, reason }), 0);
  }
});

test("after a loss master_status returns to 0 and the loss is counted by reason", async () => {
  const m = new LeaderRunMetrics({ name: NAME, defaultMetrics: false });
  m.leaderOn(NAME);
  m.onElectionEvent({ type: "acquired", lock: "l", term: 3, record: record("me", 3), sentAt: 0 });
  m.leaderOff(NAME);
  m.onElectionEvent({ type: "lost", lock: "l", reason: "foreign_holder", holder: "other" });
  m.leaderOn(NAME);
  m.onElectionEvent({ type: "acquired", lock: "l", term: 5, record: record("me", 5), sentAt: 0 });
  m.leaderOff(NAME);
  m.onElectionEvent({ type: "lost", lock: "l", reason: "deadline" });

  const f = await scrape(m);
  assert.equal(valueOf(f, "leader_election_master_status", L), 0);
  assert.equal(valueOf(f, "leader_run_acquisitions_total", L), 2);
  assert.equal(valueOf(f, "leader_run_losses_total", { ...L, reason: "foreign_holder" }), 1);
  assert.equal(valueOf(f, "leader_run_losses_total", { ...L, reason: "deadline" }), 1);
  assert.equal(valueOf(f, "leader_run_losses_total", { ...L, reason: "cancelled" }), 0);
  assert.equal(valueOf(f, "leader_run_term", L), 5, "the term of the last leadership stays visible");
});

test("child events drive child_running, restarts and exits by code", async () => {
  const m = new LeaderRunMetrics({ name: NAME, defaultMetrics: false });
  m.childStarted();
  let f = await scrape(m);
  assert.equal(valueOf(f, "leader_run_child_running", L), 1);

  m.childExited(1);
  m.childRestarted();
  m.childStarted();
  m.childExited(143);
  m.childRestarted();
  m.childStarted();
  m.childExited(1);
  f = await scrape(m);
  assert.equal(valueOf(f, "leader_run_child_running", L), 0);
  assert.equal(valueOf(f, "leader_run_child_restarts_total", L), 2);
  assert.equal(valueOf(f, "leader_run_child_exits_total", { ...L, code: "1" }), 2);
  assert.equal(valueOf(f, "leader_run_child_exits_total", { ...L, code: "143" }), 1);
});

test("the exposition with Node process metrics parses as valid Prometheus text", async () => {
  const m = new LeaderRunMetrics({ name: 'we"ird\\name\n', defaultMetrics: true });
  m.leaderOn('we"ird\\name\n');
  assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
  const f = await scrape(m);
  assert.equal(valueOf(f, "leader_election_master_status", { name: 'we"ird\\name\n' }), 1, "label values are escaped");
  assert.ok(f.has("process_cpu_user_seconds_total"), "process metrics present");
  assert.ok(f.has("process_start_time_seconds"));
  assert.ok(f.has("nodejs_heap_size_used_bytes"));
  assert.ok(f.has("nodejs_eventloop_lag_seconds"));
  for (const family of f.values()) assert.ok(family.help, `${family.name} has HELP`);
});

test("metrics live in a dedicated registry, never prom-client's global one", async () => {
  const a = new LeaderRunMetrics({ name: "a", defaultMetrics: false });
  const b = new LeaderRunMetrics({ name: "b", defaultMetrics: false });
  a.leaderOn("a");
  assert.equal(globalRegistry.getSingleMetric("leader_election_master_status"), undefined);
  assert.equal(globalRegistry.getSingleMetric("leader_run_acquisitions_total"), undefined);
  assert.equal(valueOf(await scrape(b), "leader_election_master_status", { name: "a" }), undefined);
  assert.equal(valueOf(await scrape(a), "leader_election_master_status", { name: "a" }), 1);
});

test("the exposition checker rejects malformed Prometheus text", () => {
  const good = '# HELP x_total X.\n# TYPE x_total counter\nx_total{a="1"} 3\n';
  assert.equal(valueOf(parsePrometheusText(good), "x_total", { a: "1" }), 3);
  const bad: [string, RegExp][] = [
    ["x_total 3", /end with a newline/],
    ["1x 3\n", /bad sample line/],
    ["x{1a=\"b\"} 3\n", /bad label name/],
    ['x{a="b} 3\n', /unterminated/],
    ['x{a="\\t"} 3\n', /bad escape/],
    ['x{a=b} 3\n', /must be quoted/],
    ['x{a="1",a="2"} 3\n', /duplicate label/],
    ["x three\n", /not a number/],
    ["x 3 12.5\n", /timestamp/],
    ["x 1\nx 2\n", /duplicate series/],
    ["x 1\n# TYPE x gauge\n", /after its samples/],
    ["# TYPE x gauge\n# TYPE x gauge\n", /second TYPE/],
    ["# TYPE x meter\n", /unknown type/],
    ["# TYPE x counter\nx -1\n", /non-negative/],
    ["x 1\ny 1\nx{a=\"1\"} 2\n", /not kept together/],
    ["# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n", /missing le="\+Inf"/],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /not cumulative/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n', /differs from _count/],
  ];
  for (const [text, expected] of bad) {
    assert.throws(() => parsePrometheusText(text), (e: unknown) => e instanceof PromTextError && expected.test(e.message), JSON.stringify(text));
  }
});
