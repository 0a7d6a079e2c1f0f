/**
 * A 3-member etcd cluster under the election: killing a member (whichever the client happens to talk
 * to) and killing the etcd leader must never give two leaders at once, and leadership carries on
 * through the other endpoints.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { hasEtcd, requireEtcd, startEtcd, type EtcdCluster } from "../support/etcd-server.js";
import { EtcdCandidate, Ledger, until } from "./harness.js";

const timings = { leaseDuration: 5000, renewDeadline: 3500, retryPeriod: 500 };

let etcd: EtcdCluster | undefined;

function renewalsAfter(candidates: EtcdCandidate[], since: number): number {
  return candidates.reduce((n, c) => n + c.events.filter((e) => e.at > since && (e.event.type === "renewed" || e.event.type === "acquired")).length, 0);
}

describe("etcd lock on a 3-member cluster", () => {
  before(async () => {
    if (hasEtcd()) etcd = await startEtcd({ members: 3 });
  });
  after(() => etcd?.stop());

  test("killing a member, then the etcd leader: no overlap, and leadership carries on through the other endpoints", async (t) => {
    if (!requireEtcd(t) || etcd === undefined) return;
    const cluster = etcd;
    const ledger = new Ledger();
    const name = `cluster-${process.pid}`;
    const candidates = await Promise.all(["c1", "c2"].map((id) => new EtcdCandidate(cluster.url, name, id, timings, ledger).start()));
    t.after(() => Promise.all(candidates.map((c) => c.stop())));
    assert.ok(await until(() => candidates.some((c) => c.leading), 15_000), "someone leads");
    const leader = candidates.find((c) => c.leading);
    assert.ok(leader);

    // A follower member first (the client spreads its calls over all three endpoints).
    const etcdLeader = await cluster.leaderIndex();
    const victim = cluster.members[(etcdLeader + 1) % 3];
    assert.ok(victim);
    const killedAt = performance.now();
    await victim.kill();
    const renewed = await until(() => renewalsAfter(candidates, killedAt) >= 5, 15_000);
    assert.ok(renewed !== undefined, "renewals continue after a member is killed");
    assert.ok(leader.leading, "the leader kept its lease through the member's death");
    ledger.assertNoOverlap();
    victim.start();
    await cluster.waitHealthy();

    // Then the etcd leader: a new one is elected among the other two.
    const leaderMember = cluster.members[await cluster.leaderIndex()];
    assert.ok(leaderMember);
    const killedLeaderAt = performance.now();
    await leaderMember.kill();
    const renewedAgain = await until(() => renewalsAfter(candidates, killedLeaderAt) >= 5, 20_000);
    assert.ok(renewedAgain !== undefined, "someone leads and renews after the etcd leader was killed");
    assert.ok(candidates.some((c) => c.leading));
    ledger.assertNoOverlap();
    const terms = ledger.terms().filter((x): x is number => x !== undefined);
    for (let i = 1; i < terms.length; i++) assert.ok((terms[i] ?? 0) > (terms[i - 1] ?? 0), `terms increase: ${terms.join(", ")}`);
    leaderMember.start();
    await cluster.waitHealthy();

    // A frozen member (SIGSTOP) hangs the calls sent to it: each is cut at its deadline, the member is
    // skipped for a while, and the renewals go through the other two.
    const frozen = cluster.members[(await cluster.leaderIndex() + 1) % 3];
    assert.ok(frozen);
    const holder = candidates.find((c) => c.leading);
    const frozenAt = performance.now();
    await frozen.pause();
    try {
      const renewedFrozen = await until(() => renewalsAfter(candidates, frozenAt) >= 8, 20_000);
      assert.ok(renewedFrozen !== undefined, "renewals continue while a member is frozen");
      assert.ok(holder === undefined || holder.leading, "the leader kept its lease through the frozen member");
      ledger.assertNoOverlap();
    } finally {
      frozen.resume();
    }
  });
});
