/**
 * Real `LeaderElector`s on the PostgreSQL lock, in one process with their own connections: leadership
 * intervals never overlap and terms strictly increase through releases, crashes (connections cut, no
 * release) and a frozen server.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { openPostgresLock, type PostgresLock } from "../../src/locks/postgres/index.js";
import { ElectorCandidate, Ledger, delay, until } from "../support/elector-candidate.js";
import { PG_BIN, requirePostgres, startPostgres, type PgServer } from "../support/postgres-server.js";

const TIMINGS = { leaseDuration: 3000, renewDeadline: 2000, retryPeriod: 300 };
let server: PgServer | undefined;

before(async () => {
  if (PG_BIN !== undefined) server = await startPostgres();
});
after(() => server?.stop());

class Candidate extends ElectorCandidate<PostgresLock> {
  constructor(name: string, id: string, ledger: Ledger) {
    super(
      () =>
        openPostgresLock(server?.url ?? "", {
          name,
          identity: id,
          leaseDurationMs: TIMINGS.leaseDuration,
          renewDeadlineMs: TIMINGS.renewDeadline,
          env: {},
        }),
      name,
      id,
      TIMINGS,
      ledger,
    );
  }
}

describe("elections on PostgreSQL", () => {
  test("three candidates: releases, a crash and a frozen server never give two leaders; terms strictly increase", async (t) => {
    if (!requirePostgres(t)) return;
    const s = server as PgServer;
    const ledger = new Ledger();
    const name = `elect-${process.pid}`;
    const all = await Promise.all(["a", "b", "c"].map((id) => new Candidate(name, id, ledger).start()));
    t.after(() => Promise.all(all.map((c) => c.stop())));
    const leader = (): Candidate | undefined => all.find((c) => c.leading);

    assert.ok(await until(() => leader() !== undefined, 10_000), "someone leads");
    ledger.assertNoOverlap();

    // A clean stop releases: another takes over at once (notification), well within one lease duration.
    const first = leader() as Candidate;
    const stoppedAt = performance.now();
    await first.stop();
    assert.ok(await until(() => leader() !== undefined, 5000), "a successor leads");
    assert.ok(performance.now() - stoppedAt < 1500, `hand-over took ${(performance.now() - stoppedAt).toFixed(0)}ms`);
    ledger.assertNoOverlap();

    // A crash: the lease stays until it expires by the standby's clock.
    const second = leader() as Candidate;
    const crashedAt = performance.now();
    await second.crash();
    assert.ok(await until(() => leader() !== undefined, TIMINGS.leaseDuration + 5000), "the last one leads");
    assert.ok(performance.now() - crashedAt >= TIMINGS.leaseDuration - 50, "not before the lease could pass");
    ledger.assertNoOverlap();

    // A frozen server beyond the renew deadline: the leader steps down by its deadline, then leads again.
    const third = leader() as Candidate;
    s.pause();
    try {
      assert.ok(await until(() => !third.leading, TIMINGS.renewDeadline + 1000), "stepped down by the deadline");
    } finally {
      s.resume();
    }
    assert.ok(await until(() => leader() !== undefined, 15_000), "leads again after the freeze");
    await delay(300);
    ledger.assertNoOverlap();
    const terms = ledger.terms();
    for (let i = 1; i < terms.length; i++) assert.ok((terms[i] ?? -1) > (terms[i - 1] ?? -1), `terms ${terms.join(",")}`);
    for (const i of ledger.intervals) assert.equal(i.token, i.term, "the stored term is the elector's");
  });
});
