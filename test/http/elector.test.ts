import { test } from "node:test";
import assert from "node:assert/strict";
import { LeaderElector } from "../../src/election/elector.js";
import { newLeaderHealthzAdaptor } from "../../src/election/healthz.js";
import { MemoryLock, MemoryStore } from "../../src/locks/memory/index.js";
import { LeaderRunMetrics } from "../../src/http/metrics.js";
import { electorStatusSource } from "../../src/http/source.js";
import { startHttpServer, type RunningHttpServer } from "../../src/http/server.js";
import { parsePrometheusText, valueOf } from "./prom-text.js";
import { eventually, request } from "./http-client.js";

const NAME = "jobs";
const L = { name: NAME };
const HEALTHZ_TIMEOUT_MS = 500;

interface Candidate {
  lock: MemoryLock;
  elector: LeaderElector;
  metrics: LeaderRunMetrics;
  server: RunningHttpServer;
  stop: AbortController;
  run?: Promise<void>;
}

/** Wires one process the way the CLI does: metrics provider + events, HealthzAdaptor, status source, server. */
async function candidate(store: MemoryStore, identity: string): Promise<Candidate> {
  const lock = new MemoryLock(store, identity);
  const metrics = new LeaderRunMetrics({ name: NAME, defaultMetrics: false });
  const healthz = newLeaderHealthzAdaptor(HEALTHZ_TIMEOUT_MS);
  const elector = new LeaderElector({
    lock,
    name: NAME,
    leaseDuration: 2000,
    renewDeadline: 1200,
    retryPeriod: 200,
    metrics,
    onEvent: metrics.onElectionEvent,
    callbacks: {
      // Stands in for the child: runs until leadership ends.
      onStartedLeading: async (signal) => {
        metrics.childStarted();
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
        metrics.childExited(143);
      },
      onStoppedLeading: () => undefined,
    },
  });
  healthz.setLeaderElection(elector);
  const source = electorStatusSource({ name: NAME, identity, elector, healthz });
  const server = await startHttpServer({ host: "127.0.0.1", port: 0, source, metrics });
  return { lock, elector, metrics, server, stop: new AbortController() };
}

async function leaderOf(c: Candidate): Promise<{ status: number; body: Record<string, unknown> }> {
  const reply = await request(c.server.address.url, "/leader");
  return { status: reply.status, body: JSON.parse(reply.body) as Record<string, unknown> };
}

async function metricsOf(c: Candidate): Promise<ReturnType<typeof parsePrometheusText>> {
  return parsePrometheusText((await request(c.server.address.url, "/metrics")).body);
}

test("with a real LeaderElector: follower → leader → renewals stuck → lost, and the standby takes over", { timeout: 30_000 }, async () => {
  const store = new MemoryStore("memory/jobs");
  const a = await candidate(store, "a");
  const b = await candidate(store, "b");
  try {
    const before = await leaderOf(a);
    assert.equal(before.status, 503);
    assert.equal(before.body.leader, null);
    assert.equal(before.body.renewTime, null);

    a.run = a.elector.run(a.stop.signal);
    await eventually("a leads", async () => (await leaderOf(a)).status === 200);
    const leading = (await leaderOf(a)).body;
    assert.equal(leading.leader, "a");
    assert.equal(leading.isLeader, true);
    assert.equal(typeof leading.term, "number");
    const firstTerm = leading.term as number;
    assert.equal(leading.leaseDurationSeconds, 2);
    assert.equal(typeof leading.renewTime, "string");

    b.run = b.elector.run(b.stop.signal);
    await eventually("b sees a as the leader", async () => (await leaderOf(b)).body.leader === "a");
    const following = await leaderOf(b);
    assert.equal(following.status, 503);
    assert.equal(following.body.term, firstTerm, "a follower reports the holder's term");
    assert.equal((await request(b.server.address.url, "/healthz")).status, 200);

    await eventually("a renews", async () => (valueOf(await metricsOf(a), "leader_run_renew_duration_seconds_count", L) ?? 0) >= 1);
    let f = await metricsOf(a);
    assert.equal(valueOf(f, "leader_election_master_status", L), 1);
    assert.equal(valueOf(f, "leader_run_acquisitions_total", L), 1);
    assert.equal(valueOf(f, "leader_run_child_running", L), 1);
    assert.ok((valueOf(f, "leader_run_last_renew_timestamp_seconds", L) ?? 0) > Date.now() / 1000 - 60);
    assert.equal((await request(a.server.address.url, "/healthz")).status, 200);

    // Every call to the store now hangs: a's renewals get stuck and it steps down at its renew deadline.
    a.lock.fail("all", "hang");
    await eventually("a stops leading", async () => (await leaderOf(a)).status === 503);
    await a.run;
    f = await metricsOf(a);
    assert.equal(valueOf(f, "leader_election_master_status", L), 0);
    assert.equal(valueOf(f, "leader_run_losses_total", { ...L, reason: "deadline" }), 1);
    assert.equal(valueOf(f, "leader_run_child_running", L), 0);

    // client-go's Check: a process whose last observed record still names it, unrenewed for longer than
    // LD + the healthz timeout, is unhealthy, so a liveness probe restarts it.
    await eventually("a's /healthz goes 500", async () => (await request(a.server.address.url, "/healthz")).status === 500);
    const sick = await request(a.server.address.url, "/healthz/leaderElection");
    assert.equal(sick.status, 500);
    assert.equal(sick.body, `leaderElection failed: failed election to renew leadership on lease ${NAME}\n`);

    await eventually("b takes over", async () => (await leaderOf(b)).status === 200);
    const taken = (await leaderOf(b)).body;
    assert.equal(taken.leader, "b");
    assert.equal(taken.term, firstTerm + 1, "every acquisition starts a new term");
    f = await metricsOf(b);
    assert.equal(valueOf(f, "leader_election_master_status", L), 1);
    assert.equal(valueOf(f, "leader_run_acquisitions_total", L), 1);
    assert.ok((valueOf(f, "leader_run_leader_transitions_total", L) ?? 0) >= 2, "b saw a, then itself");

    b.stop.abort();
    await b.run;
    f = await metricsOf(b);
    assert.equal(valueOf(f, "leader_election_master_status", L), 0);
    assert.equal(valueOf(f, "leader_run_losses_total", { ...L, reason: "cancelled" }), 1);
    assert.equal((await leaderOf(b)).status, 503);
  } finally {
    for (const c of [a, b]) {
      c.stop.abort();
      c.lock.clearFailures();
      await c.lock.close();
      await c.run?.catch(() => undefined);
      await c.server.close();
    }
  }
});
