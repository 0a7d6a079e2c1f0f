import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { NotFoundError } from "../../src/election/lock.js";
import { openRedisLock } from "../../src/locks/redis/index.js";
import { redisCli, requireRedis, startCluster, startSentinelSetup } from "../support/redis-server.js";
import { Candidate, Ledger, delay, leaderOf, startAll, until, type Timings } from "./harness.js";

const T: Timings = { leaseDuration: 3000, renewDeadline: 2000, retryPeriod: 300 };

interface StoredLease {
  holderIdentity?: string;
  renewTime?: string;
  leaderTransitions?: number;
}

/** Polls an asynchronous check every 100 ms; false if it never held within `timeoutMs`. */
async function eventually(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (performance.now() > deadline) return false;
    await delay(100);
  }
}

// Sequential: each test starts several redis-servers and runs second-scale leases.
describe("Redis topologies", () => {
  for (const crash of [false, true]) {
    const how = crash ? "the master crashes (SIGKILL) and the sentinels promote the replica" : "a forced Sentinel failover";
    test(`Sentinel (1 master, 1 replica, 3 sentinels), ${how}: never two leaders, and the lease goes on on the new master`, async (t) => {
      if (!requireRedis(t)) return;
      const setup = await startSentinelSetup();
      const name = `sentinel-${process.pid}`;
      const ledger = new Ledger();
      const list = [new Candidate(setup.url, name, "a", T, ledger), new Candidate(setup.url, name, "b", T, ledger)];
      t.after(async () => {
        await Promise.all(list.map((c) => c.stop()));
        await setup.stop();
      });
      await startAll(list);
      assert.ok(await until(() => leaderOf(list).length === 1, 8000), "a leader before the failover");
      const firstTerm = ledger.intervals[0]?.term ?? -1;
      // Replication is asynchronous: a write the replica never received is lost when the master crashes
      // (docs/redis.md says so). Wait until the replica has the fencing counter, so this test is about the
      // failover itself and not about that window.
      const replicaAdmin = new Redis({ host: "127.0.0.1", port: setup.replica.port, disconnectTimeout: 100 });
      t.after(() => replicaAdmin.disconnect());
      const replicated = async (): Promise<boolean> => {
        const deadline = performance.now() + 5000;
        while (performance.now() < deadline) {
          if ((await replicaAdmin.get(`leader-run:{${name}}:token`)) !== null) return true;
          await delay(50);
        }
        return false;
      };
      assert.ok(await replicated(), "the replica received the fencing counter");
      await delay(300);

      let newMasterPort: number;
      if (crash) {
        await setup.master.kill();
        newMasterPort = setup.master.port;
        const deadline = performance.now() + 20_000;
        while (newMasterPort === setup.master.port && performance.now() < deadline) {
          await delay(200);
          newMasterPort = await setup.currentMasterPort();
        }
      } else {
        newMasterPort = await setup.failover();
      }
      assert.equal(newMasterPort, setup.replica.port, "the replica was promoted");
      const failedOverAt = Date.now();
      // Through the failover the leader either keeps leading or steps down; afterwards one leads again
      // and renews on the new master. Until then a leader from before the failover may still count as
      // leading while its last writes went to the demoted (or dead) master: that converges with its next
      // renewal (READONLY or a refused connection sends it through Sentinel to the new master) or, if it
      // steps down, when the lease runs out. So wait for a renewal written after the failover.
      const admin = new Redis({ host: "127.0.0.1", port: newMasterPort, disconnectTimeout: 100 });
      t.after(() => admin.disconnect());
      let stored: StoredLease = {};
      let leaderId: string | undefined;
      await eventually(async () => {
        const leaders = leaderOf(list);
        leaderId = leaders.length === 1 && ledger.openCount() === 1 ? leaders[0]?.id : undefined;
        stored = JSON.parse((await admin.get(`leader-run:{${name}}:lease`).catch(() => null)) ?? "{}") as StoredLease;
        return leaderId !== undefined && stored.holderIdentity === leaderId && Date.parse(stored.renewTime ?? "") >= failedOverAt;
      }, 15_000);
      ledger.assertNoOverlap();
      assert.ok(leaderId !== undefined, `one leader after the failover (${leaderOf(list).length} leading, ${ledger.openCount()} open)`);
      assert.equal(stored.holderIdentity, leaderId, "the new master holds the live lease");
      assert.ok(Date.parse(stored.renewTime ?? "") >= failedOverAt, `renewed on the new master after the failover: ${stored.renewTime}`);
      assert.ok((stored.leaderTransitions ?? -1) >= firstTerm);
      const terms = ledger.terms();
      for (let i = 1; i < terms.length; i++) assert.ok((terms[i] ?? -1) > (terms[i - 1] ?? -1), `terms increase: ${terms.join(",")}`);
    });
  }

  test("a 3-master Cluster: both keys of a lease share a slot, leases spread over masters, election and hand-over work", async (t) => {
    if (!requireRedis(t)) return;
    const cluster = await startCluster(3);
    const teardown: (() => Promise<unknown>)[] = [];
    t.after(async () => {
      for (const step of teardown.reverse()) await step();
      await cluster.stop();
    });
    const first = cluster.nodes[0];
    assert.ok(first);

    // Leases whose hash tags land on different masters each get their own leader.
    // Names carry our pid, so their slots vary between runs: the fifth name is one on another master
    // when the first four share one (five fixed names all landed on one master about once in 80 runs).
    const names: string[] = [];
    const slots: string[] = [];
    const master = (slot: string): number => Math.floor(Number(slot) / 5462);
    for (let i = 0; names.length < 5; i++) {
      const name = `lease${i}-${process.pid}`;
      const slot = await redisCli(first.port, ["CLUSTER", "KEYSLOT", `leader-run:{${name}}:lease`]);
      if (names.length === 4 && new Set([...slots, slot].map(master)).size < 2) continue;
      names.push(name);
      slots.push(slot);
    }
    const tokenSlots = await Promise.all(names.map((n) => redisCli(first.port, ["CLUSTER", "KEYSLOT", `leader-run:{${n}}:token`])));
    assert.deepEqual(tokenSlots, slots, "lease and token keys share the slot");
    assert.ok(new Set(slots.map((s) => Math.floor(Number(s) / 5462))).size >= 2, "the leases live on more than one master");

    // The first lease's pair retries slowly, so only the notification can explain a quick hand-over.
    const slow: Timings = { leaseDuration: 10_000, renewDeadline: 6000, retryPeriod: 4000 };
    const ledgers = names.map(() => new Ledger());
    const groups = names.map((name, i) => [
      new Candidate(cluster.url, name, `a${i}`, i === 0 ? slow : T, ledgers[i] as Ledger),
      new Candidate(cluster.url, name, `b${i}`, i === 0 ? slow : T, ledgers[i] as Ledger),
    ]);
    teardown.push(() => Promise.all(groups.flat().map((c) => c.stop())));
    await Promise.all(groups.map((g) => startAll(g)));
    assert.ok(await until(() => groups.every((g) => leaderOf(g).length === 1), 15_000), "every lease has a leader");

    // Release hand-over through the cluster-wide notification.
    const group = groups[0] as Candidate[];
    const leader = leaderOf(group)[0] as Candidate;
    const follower = group.find((c) => c !== leader) as Candidate;
    assert.ok(await until(() => follower.eventsOf("acquire_failed").length > 0, 15_000), "the follower tried and failed");
    // The notification can only wake a follower that is already subscribed; on a loaded machine the
    // Cluster subscriber (slots first, then SUBSCRIBE) can lag. Counted per node, summed.
    const channel = `leader-run:{${names[0]}}:events`;
    const subscribers = async (): Promise<number> => {
      const counts = await Promise.all(cluster.nodes.map(async (n) => Number((await n.cli(["PUBSUB", "NUMSUB", channel])).split("\n")[1] ?? 0)));
      return counts.reduce((a, b) => a + b, 0);
    };
    for (const deadline = performance.now() + 15_000; (await subscribers()) < 2; ) {
      assert.ok(performance.now() < deadline, "both candidates subscribed to the lease's channel");
      await delay(50);
    }
    await delay(200);
    // Without a wake-up the follower's next attempt comes at least one retry period after its last one.
    const nextRetry = (follower.eventsOf("acquire_failed").at(-1)?.at ?? 0) + slow.retryPeriod;
    const stopAt = performance.now();
    await leader.stop();
    const took = await until(() => follower.leading, slow.retryPeriod * 2.2);
    assert.ok(took !== undefined, "the follower took over");
    assert.ok(
      took < nextRetry,
      `hand-over through the notification: ${(took - stopAt).toFixed(0)}ms; the next retry was due after ${(nextRetry - stopAt).toFixed(0)}ms`,
    );
    for (const l of ledgers) l.assertNoOverlap();
    const terms = (ledgers[0] as Ledger).terms();
    assert.deepEqual(terms, [0, 1]);

    // A plain lock on the cluster: NotFound, then create (set-if-absent) works.
    const lock = await openRedisLock(cluster.url, { name: `plain-${process.pid}`, identity: "p", leaseDurationMs: 3000, renewDeadlineMs: 2000 });
    teardown.push(() => lock.close());
    await assert.rejects(lock.get(), NotFoundError);
  });
});
