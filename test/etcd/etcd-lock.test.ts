/**
 * The etcd lock's contract against a real single-member etcd: compare-and-swap, error mapping, raw
 * changing per write, terms that never go back (delete, expiry, restart), abort while etcd is frozen,
 * watch wake-ups, and release through the elector.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, ConflictError, CorruptRecordError, NotFoundError, type WatchHealth, type WatchedRecord } from "../../src/election/lock.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import { EtcdConfigError, EtcdUnavailableError, etcdCapabilities, openEtcdLock, type EtcdLock, type EtcdLockOptions } from "../../src/locks/etcd/index.js";
import { hasEtcd, requireEtcd, startEtcd, type EtcdCluster } from "../support/etcd-server.js";
import { EtcdCandidate, Ledger, until } from "./harness.js";

const LD = 4000;
const RD = 3000;

function rec(holder: string, term: number, at = new Date()): LeaderElectionRecord {
  return { holderIdentity: holder, leaseDurationSeconds: LD / 1000, acquireTime: at, renewTime: at, leaderTransitions: term };
}

let etcd: EtcdCluster | undefined;
const opened: EtcdLock[] = [];
let counter = 0;

function uniqueName(): string {
  counter += 1;
  return `lease-${process.pid}-${counter}`;
}

function cluster(): EtcdCluster {
  if (etcd === undefined) throw new Error("etcd not started");
  return etcd;
}

async function open(identity: string, name: string, extra: Partial<EtcdLockOptions> = {}): Promise<EtcdLock> {
  const lock = await openEtcdLock(cluster().url, { name, identity, leaseDurationMs: LD, renewDeadlineMs: RD, ...extra });
  opened.push(lock);
  return lock;
}

describe("etcd lock against a real etcd", () => {
  before(async () => {
    if (hasEtcd()) etcd = await startEtcd();
  });
  after(async () => {
    await Promise.all(opened.map((l) => l.close()));
    await etcd?.stop();
  });

  test("create, get, update by compare-and-swap; a racing create is AlreadyExists, a stale update a Conflict", async (t) => {
    if (!requireEtcd(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    const b = await open("b", name);
    await assert.rejects(a.get(), NotFoundError);
    await assert.rejects(b.get(), NotFoundError);
    await a.create(rec("a", 0));
    await assert.rejects(b.create(rec("b", 0)), AlreadyExistsError);
    const seenByB = await b.get();
    assert.equal(seenByB.record.holderIdentity, "a");
    await a.update(rec("a", 0));
    await assert.rejects(b.update(rec("b", 1)), (e: unknown) => e instanceof ConflictError && /now held by "a"/.test(e.message));
    // After a fresh read the same update goes through, as a new term.
    await b.get();
    await b.update(rec("b", 1));
    assert.equal((await a.get()).record.holderIdentity, "b");
    assert.equal(b.fencingToken(), 1);
  });

  test("the record is readable JSON under <prefix><name>/lease, the term under …/term", async (t) => {
    if (!requireEtcd(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    await assert.rejects(a.get(), NotFoundError);
    await a.create(rec("a", 7));
    const out = await cluster().etcdctl(["get", "--prefix", `leader-run/${name}/`]);
    const lines = out.trim().split("\n");
    assert.equal(lines[0], `leader-run/${name}/lease`);
    const json = JSON.parse(lines[1] ?? "") as Record<string, unknown>;
    assert.equal(json.holderIdentity, "a");
    assert.equal(json.leaderTransitions, 7);
    assert.deepEqual(lines.slice(2), [`leader-run/${name}/term`, "7"]);
    const custom = await open("c", name, { keyPrefix: "jobs" });
    await assert.rejects(custom.get(), NotFoundError);
    assert.equal(custom.keys.lease, `jobs/${name}/lease`);
  });

  test("raw changes on every write, even when the record's content does not", async (t) => {
    if (!requireEtcd(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    await assert.rejects(a.get(), NotFoundError);
    const at = new Date();
    await a.create(rec("a", 0, at));
    const first = (await a.get()).raw;
    await a.update(rec("a", 0, at));
    const second = (await a.get()).raw;
    assert.notEqual(first, second);
    assert.equal((await a.get()).raw, second, "no write, same raw");
  });

  test("the term never goes back: after the record is deleted, expires, and for a fresh process", async (t) => {
    if (!requireEtcd(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    await assert.rejects(a.get(), NotFoundError);
    await a.create(rec("a", 3));
    await cluster().etcdctl(["del", `leader-run/${name}/lease`]);
    const afterDelete = await a.get();
    assert.deepEqual([afterDelete.record.holderIdentity, afterDelete.record.leaderTransitions], ["", 3]);
    // The elector asks for previous + 1; the counter decides if it is ahead.
    await a.update(rec("a", 4));
    assert.equal(a.fencingToken(), 4);

    // Expiry: a short lease whose holder stops renewing disappears by etcd's clock.
    const short = await open("s", name, { leaseDurationMs: 1000, renewDeadlineMs: 900, callTimeoutMs: 800 });
    assert.equal(short.ttlSeconds(), 2);
    await short.get();
    await short.update(rec("s", 5));
    assert.equal(short.fencingToken(), 5);
    const fresh = await open("f", name);
    const deadline = Date.now() + 15_000;
    let seen = await fresh.get();
    while (seen.record.holderIdentity !== "" && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      seen = await fresh.get();
    }
    assert.equal(seen.record.holderIdentity, "", "the record expired with its etcd lease");
    assert.equal(seen.record.leaderTransitions, 5);
    // A fresh process that asks for term 1 still gets a term above every earlier one.
    await fresh.update(rec("f", 1));
    assert.equal(fresh.fencingToken(), 6);
    assert.equal((await a.get()).record.leaderTransitions, 6);
  });

  test("a non-record value is a CorruptRecordError, not a crash", async (t) => {
    if (!requireEtcd(t)) return;
    const name = uniqueName();
    await cluster().etcdctl(["put", `leader-run/${name}/lease`, "not json"]);
    const a = await open("a", name);
    await assert.rejects(a.get(), CorruptRecordError);
    await cluster().etcdctl(["put", `leader-run/${name}/term`, "x"]);
    await assert.rejects(a.get(), /not a term number/);
  });

  test("bad settings are EtcdConfigErrors", async (t) => {
    if (!requireEtcd(t)) return;
    const base = { name: "x", identity: "a", leaseDurationMs: LD, renewDeadlineMs: RD };
    await assert.rejects(openEtcdLock("etcd://127.0.0.1:1?password=x", base), (e: unknown) => e instanceof EtcdConfigError && /password_file/.test(e.message));
    await assert.rejects(openEtcdLock("etcd://127.0.0.1:1", { ...base, tls: { caFile: "/nonexistent" } }), /need an etcds:\/\/ URL/);
    await assert.rejects(openEtcdLock("etcd://u@127.0.0.1:1", { ...base, env: {} }), /needs a password: set LEADER_RUN_ETCD_PASSWORD/);
    await assert.rejects(openEtcdLock("etcd://127.0.0.1:1", { ...base, callTimeoutMs: RD }), /below the renew deadline/);
    await assert.rejects(openEtcdLock("redis://h", base), /not an etcd URL/);
    assert.equal(etcdCapabilities.expiresByItself, true);
  });

  test("an unreachable endpoint fails each call (EtcdUnavailableError) without throwing at open", async (t) => {
    if (!requireEtcd(t)) return;
    const lock = await openEtcdLock("etcd://127.0.0.1:1", { name: "x", identity: "a", leaseDurationMs: LD, renewDeadlineMs: RD });
    opened.push(lock);
    await assert.rejects(lock.get(), EtcdUnavailableError);
  });

  test("every call rejects within 100 ms of its signal while etcd is frozen (SIGSTOP)", async (t) => {
    if (!requireEtcd(t)) return;
    const name = uniqueName();
    const a = await open("a", name, { callTimeoutMs: 2500 });
    await assert.rejects(a.get(), NotFoundError);
    await a.create(rec("a", 0));
    await a.get();
    const member = cluster().members[0];
    assert.ok(member);
    await member.pause();
    try {
      for (const call of [(s: AbortSignal) => a.get(s), (s: AbortSignal) => a.update(rec("a", 0), s)]) {
        const controller = new AbortController();
        const started = performance.now();
        setTimeout(() => controller.abort(new Error("renew deadline")), 100);
        await assert.rejects(call(controller.signal), /renew deadline/);
        const took = performance.now() - started;
        assert.ok(took < 100 + 100, `rejected ${took.toFixed(0)}ms after the call, 100ms after the abort at most`);
      }
      // Without a signal, the call timeout bounds it.
      const started = performance.now();
      await assert.rejects(a.get(), EtcdUnavailableError);
      assert.ok(performance.now() - started < 2500 + 500);
    } finally {
      member.resume();
    }
    await cluster().waitHealthy();
    await a.get();
  });

  test("watch: an acquisition by another holder is a wake-up, not an announced record", async (t) => {
    // (Health and announced renewals are the conformance suite's case "announcesRenewals".)
    if (!requireEtcd(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    const b = await open("b", name);
    await a.create(rec("a", 0));
    let wakes = 0;
    const seen: WatchedRecord[] = [];
    let health: WatchHealth | undefined;
    const stop = new AbortController();
    t.after(() => stop.abort());
    b.watch((r) => (r === undefined ? (wakes += 1) : seen.push(r)), stop.signal, (h) => (health = h));
    assert.ok(await until(() => health === "connected" && wakes > 0, 5000), "connected, with a wake-up");
    const base = wakes;
    await b.get();
    await b.update(rec("b", 1));
    assert.ok(await until(() => wakes > base, 3000), "an acquisition wakes");
    assert.equal(seen.length, 0);
  });

  test("a waiting candidate takes over at once on release (watch), not after its retry period", async (t) => {
    if (!requireEtcd(t)) return;
    const name = uniqueName();
    const ledger = new Ledger();
    const timings = { leaseDuration: 12_000, renewDeadline: 8_000, retryPeriod: 5_000 };
    const first = await new EtcdCandidate(cluster().url, name, "first", timings, ledger).start();
    assert.ok(await until(() => first.leading, 10_000), "first leads");
    const second = await new EtcdCandidate(cluster().url, name, "second", timings, ledger).start();
    // Let the second one settle into its wait (its first attempt found the lease taken).
    await until(() => second.events.length > 0, 5_000);
    await new Promise((r) => setTimeout(r, 300));
    const released = performance.now();
    await first.stop();
    const tookOver = await until(() => second.leading, 10_000);
    assert.ok(tookOver !== undefined, "second leads");
    const waited = tookOver - released;
    assert.ok(waited < 1500, `took over ${waited.toFixed(0)}ms after the release (retry period 5s)`);
    ledger.assertNoOverlap();
    const terms = ledger.terms();
    assert.ok((terms[1] ?? 0) > (terms[0] ?? 0), `terms increase: ${terms.join(", ")}`);
    await second.stop();
    const after = await (await open("x", name)).get();
    assert.equal(after.record.holderIdentity, "", "stopping releases");
  });
});

describe("etcd lock across an etcd restart from its data dir", () => {
  test("the record and the term survive; a fresh process continues the terms; the old lock reconnects", async (t) => {
    if (!requireEtcd(t)) return;
    const server = await startEtcd();
    t.after(() => server.stop());
    const name = uniqueName();
    const options = { name, leaseDurationMs: LD, renewDeadlineMs: RD };
    const a = await openEtcdLock(server.url, { ...options, identity: "a" });
    t.after(() => a.close());
    await assert.rejects(a.get(), NotFoundError);
    await a.create(rec("a", 4));
    await server.restart(0);
    const fresh = await openEtcdLock(server.url, { ...options, identity: "f" });
    t.after(() => fresh.close());
    const seen = await fresh.get();
    assert.deepEqual([seen.record.holderIdentity, seen.record.leaderTransitions], ["a", 4]);
    // The old lock's channel reconnects: its next write goes through (compare-and-swap still matches).
    let renewed = false;
    for (let i = 0; i < 20 && !renewed; i++) {
      try {
        await a.update(rec("a", 4));
        renewed = true;
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    assert.ok(renewed, "the lock works again after the restart");
    await fresh.get();
    await fresh.update(rec("f", 5));
    assert.equal(fresh.fencingToken(), 5);
  });
});
