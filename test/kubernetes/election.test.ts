/**
 * leader-run's elector on the Kubernetes Lease lock: exclusion, watch-driven hand-over, and an API
 * server outage longer than the renew deadline.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { startLeaseApiServer, type LeaseApiServer } from "../support/lease-api-server.js";
import { assertNoOverlap, Candidate, waitFor, type Interval, type Timing } from "../support/k8s/candidate.js";

const dir = mkdtempSync(join(tmpdir(), "k8s-election-test-"));
let server: LeaseApiServer;
let kubeconfig: string;
const candidates: Candidate[] = [];

before(async () => {
  server = await startLeaseApiServer();
  kubeconfig = server.writeKubeconfig(join(dir, "kubeconfig.json"));
});
after(async () => {
  await Promise.all(candidates.map((c) => c.close()));
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function candidate(id: string, name: string, timing: Timing, intervals: Interval[]): Promise<Candidate> {
  const c = await Candidate.create(id, { name, kubeconfig, timing, intervals });
  candidates.push(c);
  return c;
}

describe("leader election on a Kubernetes Lease", () => {
  test("three candidates never lead at once, and every step-down hands over to another with a new term", async () => {
    const timing = { leaseDuration: 3000, renewDeadline: 2000, retryPeriod: 300 };
    const intervals: Interval[] = [];
    const all = await Promise.all(["a", "b", "c"].map((id) => candidate(id, "exclusive", timing, intervals)));
    for (const c of all) c.start();
    for (let handover = 0; handover < 4; handover++) {
      const leader = await waitFor(() => all.find((c) => c.elector.isLeading()), 8000, "a leader");
      // Lead a little, then step down (release) and campaign again.
      await new Promise((r) => setTimeout(r, 300));
      await leader.stop();
      leader.start();
      await waitFor(() => intervals.length > handover + 1, 8000, `hand-over ${handover + 1}`);
    }
    await Promise.all(all.map((c) => c.stop()));
    assertNoOverlap(intervals);
    const terms = intervals.map((i) => i.term ?? -1);
    assert.deepEqual(terms, [...terms].sort((x, y) => x - y), `terms increase: ${terms.join(",")}`);
    assert.equal(new Set(terms).size, terms.length, "each acquisition is a new term");
    const lease = server.getLease("default", "exclusive") as { spec: { holderIdentity: string; leaseTransitions: number } };
    assert.equal(lease.spec.holderIdentity, "", "the last leader released the Lease");
    assert.equal(lease.spec.leaseTransitions, Math.max(...terms));
  });

  test("a released Lease is taken within a second, woken by the watch rather than the retry period", async () => {
    // With a 2 s retry period, only the watch can explain a hand-over well under a second.
    const timing = { leaseDuration: 6000, renewDeadline: 4000, retryPeriod: 2000 };
    const intervals: Interval[] = [];
    const first = await candidate("first", "handover", timing, intervals);
    first.start();
    await waitFor(() => first.elector.isLeading(), 8000, "first to lead");
    const second = await candidate("second", "handover", timing, intervals);
    second.start();
    await waitFor(() => second.last("acquire_failed"), 8000, "second to find the lease held");
    await new Promise((r) => setTimeout(r, 300));
    await first.stop();
    const released = first.last("released");
    assert.ok(released, "first released the lease");
    const acquired = await waitFor(() => second.last("acquired"), 5000, "second to acquire");
    const gap = acquired.at - released.at;
    assert.ok(gap < 1000, `hand-over took ${gap.toFixed(0)} ms`);
    assertNoOverlap(intervals);
    await second.stop();
  });

  test("an API server outage longer than the renew deadline ends leadership before the lease could pass", async () => {
    const timing = { leaseDuration: 3000, renewDeadline: 1500, retryPeriod: 300 };
    const intervals: Interval[] = [];
    const leader = await candidate("leader", "outage", timing, intervals);
    leader.start();
    await waitFor(() => leader.elector.isLeading(), 8000, "leader");
    const follower = await candidate("follower", "outage", timing, intervals);
    follower.start();
    await waitFor(() => follower.last("acquire_failed"), 8000, "follower to wait");
    await waitFor(() => leader.last("renewed"), 5000, "a renewal");

    server.setOutage("hang");
    const outageStart = performance.now();
    await leader.ended();
    const lost = leader.last("lost");
    assert.equal(lost?.type === "lost" ? lost.reason : undefined, "deadline");
    const lastRenewed = leader.events.filter((e) => e.type === "renewed" && e.at < (lost?.at ?? 0)).at(-1);
    assert.ok(lastRenewed && lost);
    // The renewal was sent before it was answered, so lost - lastRenewed < RD; allow event-loop slack.
    assert.ok(lost.at - lastRenewed.at <= timing.renewDeadline + 500, `stopped ${(lost.at - lastRenewed.at).toFixed(0)} ms after the last renewal`);
    assert.ok(lost.at - lastRenewed.at < timing.leaseDuration - 500, "stopped well before anyone could take over");
    const leaderInterval = intervals.find((i) => i.who === "leader");
    // The work is told to stop synchronously, before the lost event is emitted.
    assert.ok(leaderInterval?.end !== undefined && leaderInterval.end <= lost.at, "the work was stopped no later than the lost event");
    assert.ok(leaderInterval.end < lastRenewed.at + timing.leaseDuration, "the work stopped before the lease could pass");
    // Keep the outage past the lease duration: nobody can acquire while the API server is down.
    await new Promise((r) => setTimeout(r, Math.max(0, outageStart + timing.leaseDuration + 500 - performance.now())));
    assert.equal(follower.last("acquired"), undefined);

    server.setOutage(undefined);
    const acquired = await waitFor(() => follower.last("acquired"), 10_000, "follower to take over after the outage");
    assert.ok(acquired.at - lastRenewed.at >= timing.leaseDuration, "takeover only after a full lease duration");
    assertNoOverlap(intervals);
    await follower.stop();
  });
});
