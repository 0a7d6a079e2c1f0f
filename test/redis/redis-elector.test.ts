import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { RedisServer, hasRedis, requireRedis } from "../support/redis-server.js";
import { Candidate, Ledger, delay, leaderOf, startAll, until, type CandidateOptions, type Timings } from "./harness.js";

// Short leases; RD + margin < LD as the CLI requires.
const T: Timings = { leaseDuration: 2000, renewDeadline: 1200, retryPeriod: 250 };
// For tests about what survives an outage, not about its timing: a renew deadline with seconds to
// spare over a freeze or a restart plus ioredis's reconnect backoff (up to 1 s) on a loaded machine.
const PATIENT: Timings = { leaseDuration: 6000, renewDeadline: 4000, retryPeriod: 250 };

let shared: RedisServer | undefined;
const cleanups: (() => Promise<void>)[] = [];
let n = 0;
const lease = (): string => `el-${process.pid}-${++n}`;

function sharedServer(): RedisServer {
  if (shared === undefined) throw new Error("the shared redis-server did not start");
  return shared;
}

async function candidates(url: string, name: string, ids: string[], ledger: Ledger, timings = T, options: CandidateOptions = {}): Promise<Candidate[]> {
  const list = ids.map((id) => new Candidate(url, name, id, timings, ledger, options));
  cleanups.push(() => Promise.all(list.map((c) => c.stop())).then(() => undefined));
  return startAll(list);
}

// Sequential: second-scale leases and deadlines need the CPU this shared machine has left.
describe("LeaderElector on the Redis lock", () => {
  before(async () => {
    if (hasRedis()) shared = await RedisServer.start();
  });
  after(async () => {
    await Promise.all(cleanups.map((c) => c()));
    await shared?.kill();
  });

  test("three candidates: one leader at a time, hand-overs on release, and strictly increasing terms equal to the stored token", async (t) => {
    if (!requireRedis(t)) return;
    const ledger = new Ledger();
    const name = lease();
    const list = await candidates(shared?.url ?? "", name, ["a", "b", "c"], ledger);
    // Each leader steps down (release) shortly after it starts; the others take over.
    for (let round = 0; round < 4; round++) {
      const at = await until(() => leaderOf(list).length === 1, 5000);
      assert.ok(at !== undefined, `round ${round}: someone leads`);
      ledger.assertNoOverlap();
      const leader = leaderOf(list)[0] as Candidate;
      await delay(150);
      // Simulate the leader's work finishing: restart its campaign (release, then campaign again).
      const replacement = new Candidate(leader.url, name, `${leader.id}${round}`, T, ledger);
      await leader.stop();
      list.splice(list.indexOf(leader), 1, await replacement.start());
      cleanups.push(() => replacement.stop());
    }
    await until(() => leaderOf(list).length === 1, 5000);
    ledger.assertNoOverlap();
    const terms = ledger.terms();
    assert.ok(terms.length >= 5);
    for (let i = 1; i < terms.length; i++) assert.ok((terms[i] ?? -1) > (terms[i - 1] ?? -1), `terms increase: ${terms.join(",")}`);
    for (const i of ledger.intervals) assert.equal(i.term, i.token, "elector term = token Redis stored");
  });

  test("a released lease is taken through the notification, before the follower's next retry could run", async (t) => {
    if (!requireRedis(t)) return;
    // A long retry period: only the pub/sub wake-up can explain a fast take-over.
    const slow: Timings = { leaseDuration: 6000, renewDeadline: 4000, retryPeriod: 2000 };
    const ledger = new Ledger();
    const [a, b] = await candidates(shared?.url ?? "", lease(), ["a", "b"], ledger, slow);
    assert.ok(a && b);
    assert.ok(await until(() => a.leading || b.leading, 8000));
    const [leader, follower] = a.leading ? [a, b] : [b, a];
    assert.ok(await until(() => follower.eventsOf("acquire_failed").length > 0, 8000), "the follower tried and failed");
    await delay(300); // the follower is now waiting between retries
    // Without a wake-up the follower's next attempt comes at least one retry period after its last one.
    const lastAttempt = follower.eventsOf("acquire_failed").at(-1)?.at ?? 0;
    const nextRetry = lastAttempt + slow.retryPeriod;
    const stopAt = performance.now();
    await leader.stop();
    const took = await until(() => follower.leading, 3000);
    assert.ok(took !== undefined, "the follower took over");
    assert.ok(
      took < nextRetry,
      `hand-over took ${(took - stopAt).toFixed(0)}ms; the next retry was due ${(nextRetry - stopAt).toFixed(0)}ms after the stop`,
    );
    ledger.assertNoOverlap();
  });

  test("a crashed leader (no release) is replaced when its lease expires: not before, and within LD + RP", async (t) => {
    if (!requireRedis(t)) return;
    const ledger = new Ledger();
    const [a, b] = await candidates(shared?.url ?? "", lease(), ["a", "b"], ledger);
    assert.ok(a && b);
    assert.ok(await until(() => a.leading || b.leading, 5000));
    const [leader, follower] = a.leading ? [a, b] : [b, a];
    await delay(500);
    // Where the lease runs out: LD after Redis applied the last renewal (a renewal still in flight at
    // the crash only moves it later). Taking over earlier would mean two leaders.
    const expiresAt = await sharedServer().expiryOf(leader.lock?.keys.lease ?? "");
    const crashAt = performance.now();
    await leader.crash();
    const took = await until(() => follower.leading, T.leaseDuration + 3000);
    assert.ok(took !== undefined, "the follower took over");
    assert.ok(took >= expiresAt - 5, `not before the lease ran out (${(took - expiresAt).toFixed(0)}ms after)`);
    assert.ok(took - crashAt <= T.leaseDuration + T.retryPeriod + 400, `within LD + RP (+ slack): ${(took - crashAt).toFixed(0)}ms`);
    ledger.assertNoOverlap();
    assert.equal((ledger.intervals.at(-1)?.term ?? 0) - (ledger.intervals.at(-2)?.term ?? 0), 1);
  });

  test("Redis frozen longer than the renew deadline: the leader stops before its lease could pass, then leads again", async (t) => {
    if (!requireRedis(t)) return;
    const server = await RedisServer.start();
    t.after(() => server.kill());
    const ledger = new Ledger();
    const [a, b] = await candidates(server.url, lease(), ["a", "b"], ledger);
    assert.ok(a && b);
    assert.ok(await until(() => a.leading || b.leading, 5000));
    const leader = a.leading ? a : b;
    await delay(400);
    // Nothing Redis applies during the freeze can shorten the lease, so it cannot pass before this.
    const expiresAt = await server.expiryOf(leader.lock?.keys.lease ?? "");
    const interval = leader.current;
    server.pause();
    const lostAt = await until(() => !leader.leading, T.renewDeadline + 1500);
    server.resume();
    assert.ok(lostAt !== undefined, "the leader stepped down");
    const lost = leader.eventsOf("lost").at(-1);
    assert.equal(lost?.event.reason, "deadline");
    const stoppedAt = interval?.end ?? lostAt;
    assert.ok(stoppedAt < expiresAt, `stopped ${(expiresAt - stoppedAt).toFixed(0)}ms before the lease could pass`);
    // Back: somebody leads again (campaign again), never two at once.
    assert.ok(await until(() => leaderOf([a, b]).length === 1, 8000), "a leader again after the outage");
    ledger.assertNoOverlap();
  });

  test("Redis frozen briefly (shorter than the renew deadline): the leader keeps leading", async (t) => {
    if (!requireRedis(t)) return;
    const server = await RedisServer.start();
    t.after(() => server.kill());
    const ledger = new Ledger();
    // A command timeout well below the freeze: renewals during it time out and are retried.
    const [a] = await candidates(server.url, lease(), ["a"], ledger, PATIENT, { lock: { commandTimeoutMs: 500 } });
    assert.ok(a);
    assert.ok(await until(() => a.leading, 5000));
    await delay(300);
    server.pause();
    await delay(PATIENT.renewDeadline / 4);
    server.resume();
    const resumedAt = performance.now();
    const renewed = await until(() => a.eventsOf("renewed").some((e) => e.at > resumedAt) || !a.leading, PATIENT.renewDeadline);
    assert.ok(renewed !== undefined, "renewed again after the freeze");
    assert.ok(a.leading, "still leading");
    assert.equal(ledger.intervals.length, 1, "never stepped down");
    assert.equal(a.eventsOf("lost").length, 0);
  });

  test("Redis restarted with AOF: the lease and the token survive and the next term continues the count", async (t) => {
    if (!requireRedis(t)) return;
    const server = await RedisServer.start({ aof: true });
    t.after(() => server.kill());
    const ledger = new Ledger();
    const name = lease();
    const [a, b] = await candidates(server.url, name, ["a", "b"], ledger, PATIENT);
    assert.ok(a && b);
    assert.ok(await until(() => a.leading || b.leading, 5000));
    const [leader, follower] = a.leading ? [a, b] : [b, a];
    const term = ledger.intervals[0]?.term ?? -1;
    // Crash Redis (SIGKILL: only the AOF, fsynced on every write, keeps the data) and bring it back.
    await server.kill();
    await server.startAgain();
    const restartedAt = performance.now();
    const admin = new Redis({ port: server.port, host: "127.0.0.1", disconnectTimeout: 100 });
    t.after(() => admin.disconnect());
    const stored = JSON.parse((await admin.get(`leader-run:{${name}}:lease`)) ?? "{}") as { holderIdentity?: string; leaderTransitions?: number };
    assert.equal(stored.holderIdentity, leader.id, "the lease survived");
    assert.equal(stored.leaderTransitions, term);
    assert.equal(await admin.get(`leader-run:{${name}}:token`), String(term), "the token survived");
    const renewed = await until(() => leader.eventsOf("renewed").some((e) => e.at > restartedAt) || !leader.leading, PATIENT.renewDeadline);
    assert.ok(renewed !== undefined, "the leader renewed against the restarted server");
    assert.ok(leader.leading, "the leader kept leading through a short restart");
    assert.equal(ledger.intervals.length, 1);
    await leader.stop();
    assert.ok(await until(() => follower.leading, 5000));
    assert.equal(ledger.intervals[1]?.term, term + 1);
    ledger.assertNoOverlap();
  });
});
