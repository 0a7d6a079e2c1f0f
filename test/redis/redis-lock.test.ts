import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Redis } from "ioredis";
import {
  AlreadyExistsError,
  ConflictError,
  CorruptRecordError,
  NotFoundError,
  PermanentLockError,
} from "../../src/election/lock.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import type { WatchHealth, WatchedRecord } from "../../src/election/lock.js";
import { RedisUnavailableError, openRedisLock, type RedisLock, type RedisLockOptions } from "../../src/locks/redis/index.js";
import { OPENSSL, RedisServer, freePort, hasRedis, makeTempDir, makeTestCertificates, requireRedis } from "../support/redis-server.js";

const LD = 2000;
const RD = 1200;

function rec(holder: string, term: number, at = new Date()): LeaderElectionRecord {
  return { holderIdentity: holder, leaseDurationSeconds: LD / 1000, acquireTime: at, renewTime: at, leaderTransitions: term };
}

let server: RedisServer | undefined;
let admin: Redis | undefined;
const opened: RedisLock[] = [];
let leaseCounter = 0;

async function open(identity: string, name: string, extra: Partial<RedisLockOptions> = {}, url = server?.url ?? ""): Promise<RedisLock> {
  const lock = await openRedisLock(url, { name, identity, leaseDurationMs: LD, renewDeadlineMs: RD, ...extra });
  opened.push(lock);
  return lock;
}

function uniqueName(): string {
  leaseCounter += 1;
  return `lease-${process.pid}-${leaseCounter}`;
}

function db(): Redis {
  if (admin === undefined) throw new Error("no server");
  return admin;
}

function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const start = Date.now();
    const tick = (): void => {
      if (check()) resolve(true);
      else if (Date.now() - start > timeoutMs) resolve(false);
      else setTimeout(tick, 5);
    };
    tick();
  });
}

describe("Redis lock against a real redis-server", { concurrency: true }, () => {
  before(async () => {
    if (!hasRedis()) return;
    server = await RedisServer.start();
    admin = new Redis({ host: "127.0.0.1", port: server.port, disconnectTimeout: 100 });
  });
  after(async () => {
    await Promise.all(opened.map((l) => l.close()));
    admin?.disconnect();
    await server?.kill();
  });

  test("a new lease is NotFound; create stores the record as JSON with term 0, a counter and an expiry", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    await assert.rejects(a.get(), NotFoundError);
    await a.create(rec("a", 0));
    const stored = await db().get(a.keys.lease);
    assert.ok(stored !== null);
    const json = JSON.parse(stored) as Record<string, unknown>;
    assert.equal(json.holderIdentity, "a");
    assert.equal(json.leaderTransitions, 0);
    assert.equal(json.leaseDurationSeconds, 2);
    assert.equal(await db().get(a.keys.token), "0");
    const pttl = await db().pttl(a.keys.lease);
    assert.ok(pttl > 0 && pttl <= LD, `expiry ${pttl}ms should be the lease duration`);
    assert.equal(await db().pttl(a.keys.token), -1, "the counter never expires");
    const { record, raw } = await a.get();
    assert.equal(raw, stored);
    assert.equal(record.holderIdentity, "a");
    assert.equal(a.lastWrittenRecord()?.leaderTransitions, 0);
  });

  test("keys share one hash tag and honour a custom prefix; describe() names key and server", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name, { keyPrefix: "myapp:" });
    assert.deepEqual(a.keys, { lease: `myapp:{${name}}:lease`, token: `myapp:{${name}}:token`, channel: `myapp:{${name}}:events` });
    await a.create(rec("a", 0));
    assert.equal(await db().exists(`myapp:{${name}}:lease`), 1);
    assert.equal(a.describe(), `myapp:{${name}}:lease on redis://127.0.0.1:${server?.port}`);
    const viaUrl = await open("b", name, {}, `${server?.url}?prefix=other:`);
    assert.equal(viaUrl.keys.lease, `other:{${name}}:lease`);
  });

  test("create is set-if-absent: a second create fails with AlreadyExistsError and writes nothing", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    const b = await open("b", name);
    await a.create(rec("a", 0));
    const before = await db().get(a.keys.lease);
    await assert.rejects(b.create(rec("b", 0)), AlreadyExistsError);
    assert.equal(await db().get(a.keys.lease), before);
  });

  test("update is compare-and-swap against the last read: a write in between is a Conflict and changes nothing", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    const b = await open("b", name);
    await a.create(rec("a", 0));
    await b.get(); // b's expectation: a's record
    await a.update(rec("a", 0, new Date(Date.now() + 1000))); // a renews: the value changes
    const afterRenew = await db().get(a.keys.lease);
    await assert.rejects(b.update(rec("b", 1)), ConflictError);
    assert.equal(await db().get(a.keys.lease), afterRenew, "a failed CAS writes nothing");
    assert.equal(await db().get(a.keys.token), "0", "a failed CAS does not touch the counter");
    // After a fresh read the same write goes through.
    await b.get();
    await b.update(rec("b", 1));
    assert.equal((await b.get()).record.holderIdentity, "b");
  });

  test("update without a prior get or create is refused as a Conflict", async (t) => {
    if (!requireRedis(t)) return;
    const a = await open("a", uniqueName());
    await assert.rejects(a.update(rec("a", 0)), ConflictError);
  });

  test("of two candidates racing from the same read exactly one acquires", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const seed = await open("old", name);
    await seed.create(rec("old", 0));
    await seed.update({ ...rec("", 0), leaseDurationSeconds: 1 }); // released
    const candidates = await Promise.all(["c1", "c2", "c3", "c4"].map((id) => open(id, name)));
    await Promise.all(candidates.map((c) => c.get()));
    const results = await Promise.allSettled(candidates.map((c, i) => c.update(rec(`c${i + 1}`, 1))));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof ConflictError);
    assert.equal(await db().get(seed.keys.token), "1");
  });

  test("each takeover stores INCR of the counter as leaderTransitions; renewals and release keep it", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    const b = await open("b", name);
    await a.create(rec("a", 0));
    await a.update(rec("a", 0)); // renewal
    assert.equal((await a.get()).record.leaderTransitions, 0);
    await b.get();
    await b.update(rec("b", 1)); // takeover
    assert.equal(b.fencingToken(), 1);
    assert.equal(await db().get(b.keys.token), "1");
    await b.update(rec("b", 1)); // renewal
    await b.update({ ...rec("", 1), leaseDurationSeconds: 1 }); // release
    const released = await a.get();
    assert.equal(released.record.holderIdentity, "");
    assert.equal(released.record.leaderTransitions, 1, "release keeps the term");
    await a.update(rec("a", 2)); // a takes the released lease
    assert.equal(a.fencingToken(), 2);
    // The same holder starting a new term (elector: previous + 1) gets a new token too.
    await a.get();
    await a.update(rec("a", 3));
    assert.equal(a.fencingToken(), 3);
    assert.equal(await db().get(a.keys.token), "3");
  });

  test("the stored term never falls below the requested one, and never below counter + 1", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    const b = await open("b", name);
    await a.create(rec("a", 0));
    // The counter runs ahead of the record (as after a partial data loss): INCR wins.
    await db().set(a.keys.token, "41");
    await b.get();
    await b.update(rec("b", 1));
    assert.equal(b.fencingToken(), 42);
    // The counter falls behind (lost): the requested term wins and the counter catches up.
    await db().set(a.keys.token, "3");
    await a.get();
    await a.update(rec("a", 43));
    assert.equal(a.fencingToken(), 43);
    assert.equal(await db().get(a.keys.token), "43");
  });

  test("the fencing counter survives the lease key's expiry: the expired lease reads as released, then term + 1", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name, { leaseDurationMs: 1000, renewDeadlineMs: 600 });
    const b = await open("b", name);
    await a.create({ ...rec("a", 0), leaseDurationSeconds: 1 });
    await b.get();
    await b.update(rec("b", 1)); // b holds term 1 for 2 s; let its key expire
    await db().pexpire(b.keys.lease, 50);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(await db().exists(b.keys.lease), 0, "the lease key expired");
    const expired = await a.get();
    assert.equal(expired.record.holderIdentity, "", "an expired lease is free");
    assert.equal(expired.record.leaderTransitions, 1, "and remembers the last term");
    await a.update(rec("a", 2));
    assert.equal(a.fencingToken(), 2);
    assert.equal(await db().get(a.keys.token), "2");
    // Only when both keys are gone (Redis lost its data) is the lease NotFound again.
    await db().del(a.keys.lease, a.keys.token);
    await assert.rejects(a.get(), NotFoundError);
  });

  test("every write resets the key's expiry to the lease duration", async (t) => {
    if (!requireRedis(t)) return;
    const a = await open("a", uniqueName());
    await a.create(rec("a", 0));
    await db().pexpire(a.keys.lease, 300);
    await a.update(rec("a", 0));
    const pttl = await db().pttl(a.keys.lease);
    // Anything well above the 300 ms left before the write shows the reset; the rest is slack for a
    // loaded machine between the write and this read.
    assert.ok(pttl > 1000 && pttl <= LD, `pttl ${pttl}`);
  });

  test("watchers hear a release and a new holder at once over pub/sub, and nothing after the watch ended", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    const b = await open("b", name);
    await a.create(rec("a", 0));
    let wakes = 0;
    const seen: WatchedRecord[] = [];
    let health: WatchHealth | undefined;
    const stop = new AbortController();
    b.watch(
      (record) => {
        if (record === undefined) wakes += 1;
        else seen.push(record);
      },
      stop.signal,
      (h) => (health = h),
    );
    // The subscription is up once the (re)connect wake-up arrived.
    assert.ok(await waitUntil(() => wakes > 0, 5000), "subscriber connected");
    const base = wakes;
    await a.update({ ...rec("", 0), leaseDurationSeconds: 1 });
    const start = Date.now();
    assert.ok(await waitUntil(() => wakes > base, 2000), "release notified");
    assert.ok(Date.now() - start < 1000, "within a second");
    const base2 = wakes;
    await a.update(rec("a", 1)); // acquisition publishes too
    assert.ok(await waitUntil(() => wakes > base2, 2000), "acquisition notified");
    assert.ok(await waitUntil(() => health === "connected", 5000), "health reported once subscribed");
    // (How a renewal is announced is the conformance suite's case "announcesRenewals".)
    const base3 = wakes;
    stop.abort();
    await a.update({ ...rec("", 1), leaseDurationSeconds: 1 });
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(wakes, base3, "no wake-up after the watch ended");
    assert.equal(seen.length, 0, "a release and an acquisition are wake-ups, not announced records");
  });

  test("watch health: disconnected when the subscriber's connection drops, connected once subscribed again", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const b = await open("b", name);
    const states: WatchHealth[] = [];
    let wakes = 0;
    const stop = new AbortController();
    t.after(() => stop.abort());
    b.watch(() => (wakes += 1), stop.signal, (h) => states.push(h));
    assert.ok(await waitUntil(() => states.at(-1) === "connected", 5000), "connected");
    const wakesBefore = wakes;
    await db().client("KILL", "TYPE", "pubsub");
    assert.ok(await waitUntil(() => states.includes("disconnected"), 5000), `disconnected (${states.join(", ")})`);
    assert.ok(await waitUntil(() => states.at(-1) === "connected" && wakes > wakesBefore, 10_000), `reconnected (${states.join(", ")})`);
  });

  test("watch wakes a candidate when the lease key it read expires by the server's clock", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    const b = await open("b", name);
    await a.create(rec("a", 0));
    let woken = 0;
    const stop = new AbortController();
    t.after(() => stop.abort());
    b.watch(() => (woken = Date.now()), stop.signal);
    // The subscriber's wake-ups (on connect, and once subscribed) come first, whenever they come: wait
    // for both before starting the clock, or one would pass for the expiry wake-up.
    assert.ok(await waitUntil(() => woken > 0, 5000), "subscriber connected");
    for (const deadline = Date.now() + 5000; Number((await db().pubsub("NUMSUB", a.keys.channel))[1]) < 1; ) {
      assert.ok(Date.now() < deadline, "subscribed");
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 100));
    woken = 0;
    // Taken before PEXPIRE is sent: the key cannot expire before start + 400 ms.
    const start = Date.now();
    await db().pexpire(a.keys.lease, 400);
    await b.get(); // learns the key's PTTL
    assert.ok(await waitUntil(() => woken > 0, 3000), "woken at expiry");
    assert.ok(woken - start >= 390, `not before the key expired (${woken - start}ms)`);
    assert.equal((await b.get()).record.holderIdentity, "");
  });

  test("a record that is not leader-run JSON is CorruptRecordError, and so is a bad counter", async (t) => {
    if (!requireRedis(t)) return;
    const name = uniqueName();
    const a = await open("a", name);
    await db().set(a.keys.lease, "not json");
    await assert.rejects(a.get(), CorruptRecordError);
    await db().set(a.keys.lease, JSON.stringify({ holderIdentity: 5 }));
    await assert.rejects(a.get(), CorruptRecordError);
    await db().del(a.keys.lease);
    await db().set(a.keys.token, "x");
    await assert.rejects(a.get(), CorruptRecordError);
  });
});

describe("Redis lock when the server misbehaves", { concurrency: true }, () => {
  test("commands fail fast instead of queueing while Redis is down, and work again once it is back", async (t) => {
    if (!requireRedis(t)) return;
    const s = await RedisServer.start();
    t.after(() => s.kill());
    const a = await open("a", uniqueName(), {}, s.url);
    t.after(() => a.close());
    await a.create(rec("a", 0));
    await s.kill();
    await new Promise((r) => setTimeout(r, 100));
    const start = Date.now();
    await assert.rejects(a.get(), RedisUnavailableError);
    assert.ok(Date.now() - start < 300, "no waiting for a connection");
    await s.startAgain();
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await a.get();
        break;
      } catch (error) {
        if (!(error instanceof NotFoundError || error instanceof RedisUnavailableError) || Date.now() > deadline) throw error;
        if (error instanceof NotFoundError) break; // no persistence: the data is gone, but the server answers
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  test("a frozen server (SIGSTOP) fails each command within the command timeout, below the renew deadline", async (t) => {
    if (!requireRedis(t)) return;
    const s = await RedisServer.start();
    t.after(() => s.kill());
    const a = await open("a", uniqueName(), { commandTimeoutMs: 300 }, s.url);
    t.after(() => a.close());
    await a.create(rec("a", 0));
    s.pause();
    t.after(() => s.resume());
    const start = Date.now();
    await assert.rejects(a.update(rec("a", 0)), RedisUnavailableError);
    const took = Date.now() - start;
    assert.ok(took >= 250 && took < RD, `timed out after ${took}ms`);
    // An abort signal ends a pending call promptly, with the signal's reason.
    const ac = new AbortController();
    const reason = new Error("cancelled by test");
    setTimeout(() => ac.abort(reason), 50);
    const start2 = Date.now();
    await assert.rejects(a.get(ac.signal), (e) => e === reason);
    assert.ok(Date.now() - start2 < 250);
    s.resume();
    // A timed-out renewal that Redis executes late cannot overwrite a newer record: it is a CAS.
    // Once resumed the server answers again; a stall of this process past the 300 ms command timeout
    // must not fail the test, so a timeout is retried.
    const back = Date.now() + 5000;
    for (;;) {
      try {
        await a.get();
        break;
      } catch (error) {
        if (!(error instanceof RedisUnavailableError) || Date.now() > back) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });

  test("an unreachable server does not fail openRedisLock; operations report it until the server appears", async (t) => {
    if (!requireRedis(t)) return;
    const port = await freePort();
    const a = await open("a", uniqueName(), { connectWaitMs: 300 }, `redis://127.0.0.1:${port}`);
    t.after(() => a.close());
    await assert.rejects(a.get(), (e: unknown) => e instanceof RedisUnavailableError && /ECONNREFUSED/.test(e.message));
    const s = await RedisServer.start({ port });
    t.after(() => s.kill());
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await a.get();
        assert.fail("expected NotFound");
      } catch (error) {
        if (error instanceof NotFoundError) break;
        if (Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
});

describe("Redis credentials", { concurrency: true }, () => {
  const PASSWORD = "s3cret-pw";
  let secured: RedisServer | undefined;
  before(async () => {
    if (!hasRedis()) return;
    secured = await RedisServer.start({
      password: PASSWORD,
      config: ["user limited on >limited-pw ~other:* +@all", "user reader on >reader-pw ~* +get +ping"],
    });
  });
  after(async () => {
    await secured?.kill();
  });

  const noSecret = (e: unknown): boolean => e instanceof Error && !e.message.includes(PASSWORD) && !e.message.includes("\n");

  test("a wrong password is a PermanentLockError with a one-line message that hides the password", async (t) => {
    if (!requireRedis(t)) return;
    await assert.rejects(
      openRedisLock(`redis://:wrong-${PASSWORD}@127.0.0.1:${secured?.port}`, { name: "x", identity: "a", leaseDurationMs: LD, renewDeadlineMs: RD }),
      (e: unknown) => e instanceof PermanentLockError && /rejected the credentials/.test(e.message) && noSecret(e),
    );
  });

  test("no password where one is required is a PermanentLockError (NOAUTH)", async (t) => {
    if (!requireRedis(t)) return;
    await assert.rejects(
      openRedisLock(`redis://127.0.0.1:${secured?.port}`, { name: "x", identity: "a", leaseDurationMs: LD, renewDeadlineMs: RD, env: {} }),
      (e: unknown) => e instanceof PermanentLockError && /NOAUTH/.test(e.message),
    );
  });

  test("an ACL user without access to the keys or scripts is a PermanentLockError (NOPERM)", async (t) => {
    if (!requireRedis(t)) return;
    for (const [user, pw] of [
      ["limited", "limited-pw"],
      ["reader", "reader-pw"],
    ]) {
      await assert.rejects(
        openRedisLock(`redis://${user}:${pw}@127.0.0.1:${secured?.port}`, { name: "x", identity: "a", leaseDurationMs: LD, renewDeadlineMs: RD }),
        (e: unknown) => e instanceof PermanentLockError && /NOPERM/.test(e.message) && !e.message.includes(pw ?? ""),
      );
    }
  });

  test("the password can come from a file, a named environment variable or LEADER_RUN_REDIS_PASSWORD", async (t) => {
    if (!requireRedis(t)) return;
    const dir = makeTempDir();
    const file = join(dir, "pw");
    writeFileSync(file, `${PASSWORD}\n`);
    const base = { name: uniqueName(), identity: "a", leaseDurationMs: LD, renewDeadlineMs: RD };
    const url = `redis://127.0.0.1:${secured?.port}`;
    const locks = [
      await openRedisLock(url, { ...base, passwordFile: file, env: {} }),
      await openRedisLock(`${url}?password_file=${encodeURIComponent(file)}`, { ...base, env: {} }),
      await openRedisLock(url, { ...base, passwordEnv: "MY_PW", env: { MY_PW: PASSWORD } }),
      await openRedisLock(`${url}?password_env=MY_PW`, { ...base, env: { MY_PW: PASSWORD } }),
      await openRedisLock(url, { ...base, env: { LEADER_RUN_REDIS_PASSWORD: PASSWORD } }),
    ];
    t.after(() => Promise.all(locks.map((l) => l.close())));
    for (const lock of locks) await assert.rejects(lock.get(), NotFoundError);
  });
});

describe("Redis over TLS (rediss://)", { concurrency: true }, () => {
  const base = { identity: "a", leaseDurationMs: LD, renewDeadlineMs: RD };

  test("rediss:// with ca= verifies the server; mutual TLS with cert= and key=; an unknown CA is a PermanentLockError", async (t) => {
    if (!requireRedis(t)) return;
    if (OPENSSL === undefined) {
      t.skip("openssl not installed");
      return;
    }
    const certs = makeTestCertificates();
    const s = await RedisServer.start({ tls: { ...certs, authClients: "optional" } });
    t.after(() => s.kill());
    const url = `rediss://127.0.0.1:${s.tlsPort}`;
    const q = (o: Record<string, string>): string => new URLSearchParams(o).toString();

    const verified = await openRedisLock(`${url}?${q({ ca: certs.caFile })}`, { ...base, name: uniqueName() });
    t.after(() => verified.close());
    await assert.rejects(verified.get(), NotFoundError);
    await verified.create(rec("a", 0));
    assert.equal((await verified.get()).record.holderIdentity, "a");

    const mutual = await openRedisLock(`${url}?${q({ ca: certs.caFile, cert: certs.clientCertFile, key: certs.clientKeyFile })}`, {
      ...base,
      name: uniqueName(),
    });
    t.after(() => mutual.close());
    await assert.rejects(mutual.get(), NotFoundError);

    await assert.rejects(
      openRedisLock(url, { ...base, name: uniqueName() }),
      (e: unknown) => e instanceof PermanentLockError && /TLS/.test(e.message) && !e.message.includes("\n"),
    );
  });
});
