/**
 * The real `leader-run --lock kubernetes:` processes against the test Lease API server: exclusion across
 * hand-overs, hand-over speed through the watch, failover after SIGKILL, an API server outage, and the
 * exit codes for refused credentials and an unreachable server.
 */
import assert from "node:assert/strict";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";
import { leftovers, marker, waitFor, type ChildEvent } from "../e2e/support.js";
import { K8S_LEASE_MS, K8S_RENEW_DEADLINE_MS, K8S_RETRY_MS, KubernetesWorld, overlapSampler, type LeaderRunProcess } from "../support/k8s/cli-world.js";
import { startLeaseApiServer, type LeaseApiServer } from "../support/lease-api-server.js";

let server: LeaseApiServer;
let w: KubernetesWorld;
before(async () => {
  server = await startLeaseApiServer();
});

after(async () => {
  await server.close();
  assert.deepEqual(leftovers(), [], "processes left behind");
});
beforeEach(async () => {
  server.setOutage(undefined);
  w = await KubernetesWorld.create(server);
});
afterEach(async () => {
  assert.deepEqual(await w.cleanup(), [], "the test left processes behind");
});

const starts = (events: ChildEvent[]): ChildEvent[] => events.filter((e) => e.kind === "start").sort((a, b) => a.ms - b.ms);
const stopOf = (events: ChildEvent[], start: ChildEvent): ChildEvent | undefined =>
  events.find((e) => e.kind === "stop" && e.pid === start.pid);

async function nthStart(n: number, timeoutMs = 20_000): Promise<ChildEvent> {
  let found: ChildEvent | undefined;
  await waitFor(`child #${n} to start`, async () => {
    found = starts(await w.childEvents())[n - 1];
    return found !== undefined;
  }, timeoutMs);
  return found as ChildEvent;
}

describe("leader-run --lock kubernetes:", () => {
  test("three processes on one Lease run one child at a time across SIGTERM hand-overs; the Lease names the leader", async () => {
    const ids = ["k8s-a", "k8s-b", "k8s-c"];
    const markers = new Map(ids.map((id) => [id, marker()]));
    const runs = new Map<string, LeaderRunProcess>();
    const sampler = overlapSampler([...markers.values()]);
    try {
      for (const id of ids) runs.set(id, w.run(id, w.child(id, markers.get(id) ?? "")));
      for (let n = 1; n <= ids.length; n++) {
        const start = await nthStart(n);
        const leader = runs.get(start.tag);
        assert.ok(leader, `unknown child tag ${start.tag}`);
        // What `kubectl get lease` shows while it leads: its identity, and the term it hands the child.
        const lease = w.lease();
        assert.equal(lease?.spec.holderIdentity, start.tag);
        assert.equal(String(lease?.spec.leaseTransitions), start.fields.token);
        assert.equal((lease?.metadata.labels as Record<string, string>)["app.kubernetes.io/managed-by"], "leader-run");
        for (const other of runs.values()) if (other !== leader && other.running) await other.waitForStandby(20_000);
        leader.signal("SIGTERM");
        assert.equal(await leader.exitCode(20_000), 0, `${leader}`);
      }
    } finally {
      assert.deepEqual((await sampler.stop()).overlaps, [], "two children were alive at the same time");
    }
    const events = await w.childEvents();
    const started = starts(events);
    assert.equal(started.length, 3);
    let previous: { stop: ChildEvent; token: number } | undefined;
    for (const start of started) {
      const stop = stopOf(events, start);
      assert.ok(stop, `child of ${start.tag} has no stop line`);
      const token = Number(start.fields.token);
      if (previous) {
        assert.ok(start.ms >= previous.stop.ms, "a child started before the previous one stopped");
        assert.ok(token > previous.token, "fencing tokens increase");
      }
      previous = { stop, token };
    }
    // After the last clean stop the Lease is released, as client-go releases it.
    assert.equal(w.lease()?.spec.holderIdentity, "");
    assert.equal(w.lease()?.spec.leaseDurationSeconds, 1);
    const events2 = server.events("default").filter((e) => (e.involvedObject as { name: string }).name === w.name);
    assert.ok(events2.some((e) => e.message === "k8s-a became leader" || String(e.message).endsWith(" became leader")));
    assert.ok(events2.some((e) => String(e.message).endsWith(" stopped leading")));
  });

  test("a SIGTERM hand-over completes through the watch, faster than the retry period (2 s)", async () => {
    const retryMs = 2000;
    const timing = ["--lease-duration", "5s", "--renew-deadline", "3s", "--retry-period", "2s", "--kill-grace", "500ms"];
    const a = w.run("fast-a", w.child("fast-a", marker()), { timing });
    await w.waitForChildEvent("fast-a to start", (e) => e.kind === "start");
    const b = w.run("fast-b", w.child("fast-b", marker()), { timing });
    await b.waitForStandby(20_000);
    a.signal("SIGTERM");
    const stopped = await w.waitForChildEvent("fast-a to stop", (e) => e.kind === "stop" && e.tag === "fast-a");
    const started = await w.waitForChildEvent("fast-b to start", (e) => e.kind === "start" && e.tag === "fast-b", 10_000);
    const gap = started.ms - stopped.ms;
    // Only the watch wakes the standby sooner than a retry period; the gap also spans the 50 ms group
    // poll, the release, the standby's acquire and spawning its sh, which a loaded machine stretches.
    const bound = retryMs - 200;
    assert.ok(gap < bound, `hand-over took ${gap.toFixed(0)} ms (bound: ${bound} ms)`);
    assert.equal(await a.exitCode(), 0);
    b.signal("SIGTERM");
    assert.equal(await b.exitCode(), 0);
  });

  test("after SIGKILL of the leader, its child is gone and the standby takes over within lease + retry", async () => {
    const ma = marker();
    const mb = marker();
    const sampler = overlapSampler([ma, mb]);
    try {
      const a = w.run("kill-a", w.child("kill-a", ma));
      await w.waitForChildEvent("kill-a to start", (e) => e.kind === "start");
      const b = w.run("kill-b", w.child("kill-b", mb));
      await b.waitForStandby(20_000);
      const killedAt = Date.now();
      a.signal("SIGKILL");
      const started = await w.waitForChildEvent("kill-b to start", (e) => e.kind === "start" && e.tag === "kill-b", 15_000);
      const took = started.ms - killedAt;
      assert.ok(took <= K8S_LEASE_MS + 2.2 * K8S_RETRY_MS + 1500, `failover took ${took.toFixed(0)} ms`);
      assert.ok(took >= K8S_LEASE_MS - K8S_RENEW_DEADLINE_MS, `took over after only ${took.toFixed(0)} ms: the lease had not expired`);
      assert.equal(w.lease()?.spec.holderIdentity, "kill-b");
      b.signal("SIGTERM");
      assert.equal(await b.exitCode(), 0);
    } finally {
      assert.deepEqual((await sampler.stop()).overlaps, [], "two children were alive at the same time");
    }
  });

  test("an API server outage longer than the renew deadline stops the child before the lease could pass", async () => {
    const ma = marker();
    const mb = marker();
    const sampler = overlapSampler([ma, mb]);
    try {
      const a = w.run("out-a", w.child("out-a", ma));
      await w.waitForChildEvent("out-a to start", (e) => e.kind === "start");
      const b = w.run("out-b", w.child("out-b", mb));
      await b.waitForStandby(20_000);
      await a.waitForLog((l) => l.event === "renewed" || l.event === "child_started");
      server.setOutage("hang");
      const outageAt = Date.now();
      const stopped = await w.waitForChildEvent("out-a's child to stop", (e) => e.kind === "stop" && e.tag === "out-a", 10_000);
      const after = stopped.ms - outageAt;
      // The deadline runs from the last renewal sent, at or before outageAt. Deadline + 1000 ms equals the
      // lease duration here, so neither bound can be loosened: past it the lease could have passed on.
      assert.ok(after <= K8S_RENEW_DEADLINE_MS + 1000, `child stopped ${after.toFixed(0)} ms into the outage`);
      assert.ok(after < K8S_LEASE_MS, `child stopped ${after.toFixed(0)} ms into the outage: the lease could have passed to another holder`);
      assert.equal(await a.exitCode(), 76, `${a}`);
      // Nobody starts while the API server is down, even past the lease duration.
      await new Promise((r) => setTimeout(r, Math.max(0, outageAt + K8S_LEASE_MS + 800 - Date.now())));
      assert.equal(starts(await w.childEvents()).filter((e) => e.tag === "out-b").length, 0);
      server.setOutage(undefined);
      await w.waitForChildEvent("out-b to start after the outage", (e) => e.kind === "start" && e.tag === "out-b", 15_000);
      b.signal("SIGTERM");
      assert.equal(await b.exitCode(), 0);
    } finally {
      server.setOutage(undefined);
      assert.deepEqual((await sampler.stop()).overlaps, [], "two children were alive at the same time");
    }
  });

  test("a token without rights exits 69 naming the verb and resource it lacks", async () => {
    server.addToken("get-only", { user: "system:serviceaccount:default:job", rules: [{ resources: ["leases"], verbs: ["get"] }] });
    const p = w.run("denied", ["sh", "-c", "echo must-not-run"], { kubeconfig: w.kubeconfigFor("get-only") });
    assert.equal(await p.exitCode(20_000), 69, `${p}`);
    assert.ok(!p.stdout.includes("must-not-run"));
    assert.match(p.stderr, /create leases\.coordination\.k8s\.io/);
    assert.match(p.stderr, /403 Forbidden/);
    assert.match(p.stderr, /rbac\.yaml/);
  });

  test("refused credentials (401) exit 69", async () => {
    const p = w.run("unauthorized", ["true"], { kubeconfig: w.kubeconfigFor("not-a-token") });
    assert.equal(await p.exitCode(20_000), 69, `${p}`);
    assert.match(p.stderr, /401 Unauthorized/);
    assert.ok(!p.stderr.includes("not-a-token"), "the token is not printed");
  });

  test("an unreachable API server: --no-wait exits 69, otherwise leader-run keeps campaigning", async () => {
    server.setOutage("reset");
    const once = w.run("no-wait", ["true"], { extra: ["--no-wait"] });
    assert.equal(await once.exitCode(20_000), 69, `${once}`);

    const patient = w.run("patient", w.child("patient", marker()));
    await patient.waitForLog("acquire_failed", 20_000);
    assert.ok(patient.running);
    server.setOutage(undefined);
    await w.waitForChildEvent("patient to start once the server is back", (e) => e.kind === "start", 15_000);
    patient.signal("SIGTERM");
    assert.equal(await patient.exitCode(), 0);
  });

  test("without --identity the holder identity comes from POD_NAME", async () => {
    const p = w.run(undefined, w.child("pod", marker()), { env: { POD_NAME: "web-0" } });
    const start = await w.waitForChildEvent("the child to start", (e) => e.kind === "start");
    assert.match(start.fields.identity ?? "", /^web-0_/);
    assert.equal(w.lease()?.spec.holderIdentity, start.fields.identity);
    p.signal("SIGTERM");
    assert.equal(await p.exitCode(), 0);
  });
});
