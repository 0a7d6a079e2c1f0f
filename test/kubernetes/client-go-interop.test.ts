/**
 * leader-run and a client-go program (LeaseLock) on the same Lease: each honours the other's Lease, and
 * in a mixed election they never lead at the same time. The Go side is test/support/k8s/client-go-peer.ts,
 * written from client-go's documented behaviour, independently of leader-run's lock.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ClientGoPeer } from "../support/k8s/client-go-peer.js";
import { assertNoOverlap, Candidate, waitFor, type Interval, type Timing } from "../support/k8s/candidate.js";
import { loadFixture } from "../support/k8s/fixtures.js";
import { parseGoTime, RFC3339_MICRO } from "../support/k8s/go-time.js";
import { LEASES_PATH, rawRequest } from "../support/k8s/raw-client.js";
import { startLeaseApiServer, type LeaseApiServer } from "../support/lease-api-server.js";

const dir = mkdtempSync(join(tmpdir(), "k8s-interop-test-"));
let server: LeaseApiServer;
let kubeconfig: string;
const cleanup: Array<() => Promise<void>> = [];

before(async () => {
  server = await startLeaseApiServer();
  kubeconfig = server.writeKubeconfig(join(dir, "kubeconfig.json"));
});
after(async () => {
  for (const c of cleanup.reverse()) await c();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

// Go compares records at whole-second granularity, so LD must also cover one second of blindness.
const TIMING: Timing = { leaseDuration: 4000, renewDeadline: 1500, retryPeriod: 400 };

async function candidate(id: string, name: string, intervals: Interval[], timing = TIMING): Promise<Candidate> {
  const c = await Candidate.create(id, { name, kubeconfig, timing, intervals });
  cleanup.push(() => c.close());
  return c;
}

function goPeer(identity: string, name: string, releaseOnCancel = true): { peer: ClientGoPeer; start: () => void; stop: () => Promise<void> } {
  const peer = new ClientGoPeer({
    server,
    namespace: "default",
    name,
    identity,
    leaseDurationMs: TIMING.leaseDuration,
    renewDeadlineMs: TIMING.renewDeadline,
    retryPeriodMs: TIMING.retryPeriod,
    releaseOnCancel,
  });
  let ac: AbortController | undefined;
  let running: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    ac?.abort();
    await running;
    running = undefined;
  };
  cleanup.push(stop);
  return {
    peer,
    start: () => {
      ac = new AbortController();
      running = peer.run(ac.signal);
    },
    stop,
  };
}

const goLeading = (peer: ClientGoPeer): boolean => peer.intervals.some((i) => i.end === undefined);

describe("leader-run and client-go on one Lease", () => {
  test("a Lease written the way client-go writes it is honoured while its holder keeps renewing", async () => {
    const intervals: Interval[] = [];
    const go = goPeer("go-node-1", "held-by-go", false);
    go.start();
    await waitFor(() => goLeading(go.peer), 8000, "the Go peer to lead");
    const ours = await candidate("leader-run-1", "held-by-go", intervals);
    ours.start();
    // Several lease durations: the Go holder keeps renewing, so leader-run must keep waiting.
    await new Promise((r) => setTimeout(r, 1.5 * TIMING.leaseDuration));
    assert.equal(ours.last("acquired"), undefined, "leader-run never takes a lease a live Go holder renews");
    assert.ok(ours.events.some((e) => e.type === "new_leader" && e.identity === "go-node-1"));

    // The Go program dies without releasing: leader-run takes over one lease duration later.
    const goTerm = go.peer.observedRecord().leaderTransitions;
    await go.stop();
    const goEnd = go.peer.intervals.at(-1)?.end ?? 0;
    const acquired = await waitFor(() => ours.last("acquired"), 3 * TIMING.leaseDuration, "leader-run to take over");
    assert.ok(acquired.at - goEnd >= TIMING.leaseDuration - TIMING.renewDeadline - TIMING.retryPeriod, "not before the Go lease could expire");
    assert.equal(ours.elector.term(), goTerm + 1);
    assertNoOverlap([...intervals, ...go.peer.intervals.map((i) => ({ ...i, who: "go" }))]);
    await ours.stop();
  });

  test("a Lease released by client-go (holder \"\") is acquired at once with the next term", async () => {
    const fixture = loadFixture("client-go-released");
    fixture.metadata.name = "released-by-go";
    server.writeLease("default", fixture as unknown as Record<string, unknown>);
    const intervals: Interval[] = [];
    const ours = await candidate("leader-run-2", "released-by-go", intervals);
    const start = performance.now();
    ours.start();
    const acquired = await waitFor(() => ours.last("acquired"), 5000, "leader-run to acquire");
    assert.ok(acquired.at - start < 2000, "no lease-duration wait for a released lease");
    assert.equal(ours.elector.term(), 4);
    await ours.stop();
  });

  test("a Lease held by a client-go fixture nobody renews is taken only after its published duration", async () => {
    const fixture = loadFixture("client-go-held");
    fixture.metadata.name = "stale-go";
    fixture.spec.leaseDurationSeconds = 3;
    server.writeLease("default", fixture as unknown as Record<string, unknown>);
    const intervals: Interval[] = [];
    const ours = await candidate("leader-run-3", "stale-go", intervals, { leaseDuration: 2000, renewDeadline: 1500, retryPeriod: 300 });
    const start = performance.now();
    ours.start();
    const acquired = await waitFor(() => ours.last("acquired"), 8000, "leader-run to acquire");
    // The holder's 3 s (from the record), not our own 2 s, counts — even though renewTime is years old.
    assert.ok(acquired.at - start >= 3000, `acquired after ${(acquired.at - start).toFixed(0)} ms`);
    assert.equal(ours.elector.term(), 4);
    await ours.stop();
  });

  test("the Lease leader-run writes is one client-go reads: holder, duration, microsecond times, transitions", async () => {
    const intervals: Interval[] = [];
    const ours = await candidate("leader-run-4", "read-by-go", intervals);
    ours.start();
    await waitFor(() => ours.last("renewed"), 8000, "a renewal");
    const res = await rawRequest(server, "GET", `${LEASES_PATH("default")}/read-by-go`);
    const spec = res.json?.spec as Record<string, unknown>;
    assert.deepEqual(Object.keys(spec), ["holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions"]);
    assert.equal(spec.holderIdentity, "leader-run-4");
    assert.equal(spec.leaseDurationSeconds, 4);
    for (const field of ["acquireTime", "renewTime"]) assert.doesNotThrow(() => parseGoTime(String(spec[field]), RFC3339_MICRO));
    // What leader-run sent (not only what the server printed back) was already in client-go's shape.
    const sent = JSON.parse(server.requests.filter((r) => r.verb === "update" && r.name === "read-by-go").at(-1)?.body ?? "{}") as {
      spec: Record<string, unknown>;
    };
    assert.deepEqual(Object.keys(sent.spec).sort(), ["acquireTime", "holderIdentity", "leaseDurationSeconds", "leaseTransitions", "renewTime"]);
    assert.match(String(sent.spec.renewTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);

    // A Go candidate sees leader-run as the holder and waits; after leader-run releases it takes over.
    const go = goPeer("go-node-2", "read-by-go");
    go.start();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(go.peer.observedRecord().holderIdentity, "leader-run-4");
    assert.equal(goLeading(go.peer), false);
    const term = ours.elector.term() ?? -1;
    await ours.stop();
    await waitFor(() => goLeading(go.peer), 2.2 * TIMING.retryPeriod + 3000, "the Go peer to take the released lease");
    assert.equal(go.peer.observedRecord().leaderTransitions, term + 1);
    assertNoOverlap([...intervals, ...go.peer.intervals.map((i) => ({ ...i, who: "go" }))]);
    await go.stop();
  });

  test("a mixed election of two leader-run candidates and a client-go peer never has two leaders", async () => {
    const intervals: Interval[] = [];
    const a = await candidate("lr-a", "mixed", intervals);
    const b = await candidate("lr-b", "mixed", intervals);
    const go = goPeer("go-c", "mixed");
    a.start();
    b.start();
    go.start();
    const goIntervals = (): Interval[] => go.peer.intervals.map((i) => ({ ...i, who: "go-c" }));
    for (let round = 0; round < 4; round++) {
      const leader = await waitFor(
        () => (goLeading(go.peer) ? "go" : [a, b].find((c) => c.elector.isLeading())),
        4 * TIMING.leaseDuration,
        `a leader in round ${round}`,
      );
      await new Promise((r) => setTimeout(r, 400));
      // Step down, and come back only after the others had their chance at the released lease.
      if (leader === "go") {
        await go.stop();
        setTimeout(() => go.start(), 1000);
      } else {
        await leader.stop();
        setTimeout(() => leader.start(), 1000);
      }
      assertNoOverlap([...intervals, ...goIntervals()]);
    }
    await new Promise((r) => setTimeout(r, 1100));
    await Promise.all([a.stop(), b.stop(), go.stop()]);
    const all = [...intervals, ...goIntervals()];
    assertNoOverlap(all);
    assert.ok(all.length >= 4, `${all.length} terms`);
    assert.ok(new Set(all.map((i) => i.who)).size >= 2, "leadership moved between candidates");
  });
});
