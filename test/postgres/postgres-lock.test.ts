/**
 * The PostgreSQL lock's contract against a real server: compare-and-swap, not-found and already-exists
 * mapping, terms that never go back, LISTEN/NOTIFY and polling wake-ups, bounded calls under a table
 * lock and a frozen server, lost connections, permissions, authentication and TLS.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { AlreadyExistsError, ConflictError, NotFoundError, PermanentLockError, type ResourceLock, type WatchHealth, type WatchedRecord } from "../../src/election/lock.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import { createTablesSql, grantSql, openPostgresLock, parseTableName, PostgresUnavailableError, type PostgresLock, type PostgresLockOptions } from "../../src/locks/postgres/index.js";
import { PG_BIN, requirePostgres, startPostgres, type PgServer } from "../support/postgres-server.js";

const RD = 2000;
let server: PgServer | undefined;
const opened: ResourceLock[] = [];
let leaseCounter = 0;

before(async () => {
  if (PG_BIN !== undefined) server = await startPostgres({ tls: true });
});
after(async () => {
  await Promise.all(opened.map((l) => l.close?.()));
  await server?.stop();
});

function srv(): PgServer {
  assert.ok(server, "server started");
  return server;
}

function lease(): string {
  return `lease-${process.pid}-${++leaseCounter}`;
}

async function open(name: string, identity: string, extra: Partial<PostgresLockOptions> = {}, url = srv().url): Promise<PostgresLock> {
  const lock = await openPostgresLock(url, { name, identity, leaseDurationMs: 3000, renewDeadlineMs: RD, env: {}, ...extra });
  opened.push(lock);
  return lock;
}

function rec(holder: string, term: number, at = new Date()): LeaderElectionRecord {
  return { holderIdentity: holder, leaseDurationSeconds: 3, acquireTime: at, renewTime: at, leaderTransitions: term };
}

async function rejectsWithin(p: Promise<unknown>, ms: number): Promise<{ error: unknown; elapsed: number }> {
  const start = performance.now();
  try {
    await p;
  } catch (error) {
    const elapsed = performance.now() - start;
    assert.ok(elapsed < ms, `rejected after ${elapsed.toFixed(0)}ms, wanted < ${ms}ms`);
    return { error, elapsed };
  }
  assert.fail("expected a rejection");
}

/** Aborts `controller` 50 ms into `call` (blocked by then) and checks it rejects within 100 ms of the abort. */
async function abandonedWithin100ms(call: Promise<unknown>, controller: AbortController): Promise<unknown> {
  const settled = call.then(
    () => assert.fail("expected a rejection"),
    (error: unknown) => ({ error, at: performance.now() }),
  );
  await delay(50);
  const abortedAt = performance.now();
  controller.abort(new Error("stop"));
  const { error, at } = await settled;
  assert.equal(error, controller.signal.reason, `rejected with the abort reason, not ${String(error)}`);
  assert.ok(at - abortedAt < 100, `rejected ${(at - abortedAt).toFixed(0)}ms after the abort`);
  return error;
}

describe("PostgreSQL lock contract", () => {
  test("get of a new lease is NotFound; create, then a racing create is AlreadyExists", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const a = await open(name, "a");
    const b = await open(name, "b");
    await assert.rejects(a.get(), NotFoundError);
    await assert.rejects(b.get(), NotFoundError);
    const results = await Promise.allSettled([a.create(rec("a", 0)), b.create(rec("b", 0))]);
    const ok = results.filter((r) => r.status === "fulfilled");
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
    assert.equal(ok.length, 1);
    assert.equal(failed.length, 1);
    assert.ok(failed[0]?.reason instanceof AlreadyExistsError, String(failed[0]?.reason));
    const { record } = await a.get();
    assert.equal(record.leaderTransitions, 0);
    const rows = await srv().psql("SELECT holder_identity, version FROM leader_run_leases WHERE name = $1", [name]);
    assert.equal(rows.length, 1);
  });

  test("update is a compare-and-swap; raw changes on every write", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const a = await open(name, "a");
    const b = await open(name, "b");
    await a.create(rec("a", 0));
    const first = await b.get();
    await a.update(rec("a", 0)); // renewal by a
    await assert.rejects(b.update(rec("b", 1)), ConflictError);
    const second = await b.get();
    assert.notEqual(second.raw, first.raw);
    await a.update(rec("a", 0));
    const third = await b.get();
    assert.notEqual(third.raw, second.raw);
    assert.equal(third.record.holderIdentity, "a");
    await assert.rejects((await open(name, "c")).update(rec("c", 1)), ConflictError, "update without a get");
  });

  test("acquisitions bump the term; it never goes back, also after the row is deleted", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const a = await open(name, "a");
    const b = await open(name, "b");
    await a.create(rec("a", 0));
    await a.update(rec("", 0)); // release
    await b.get();
    await b.update(rec("b", 1));
    assert.equal(b.fencingToken(), 1);
    await srv().psql("DELETE FROM leader_run_leases WHERE name = $1", [name]);
    const c = await open(name, "c");
    const seen = await c.get();
    assert.equal(seen.record.holderIdentity, "");
    assert.equal(seen.record.leaderTransitions, 1, "the remembered term");
    await c.update(rec("c", 2));
    assert.equal(c.fencingToken(), 2);
    // A stale writer that read the old row (same version number, lower term) cannot overwrite the new one.
    await assert.rejects(b.update(rec("b", 1)), ConflictError);
    // Even a writer asking for a lower term gets one above every earlier term.
    await srv().psql("DELETE FROM leader_run_leases WHERE name = $1", [name]);
    const d = await open(name, "d");
    await d.get();
    await d.update(rec("d", 0));
    assert.equal(d.fencingToken(), 3);
  });

  test("LISTEN/NOTIFY wakes a waiter at once when the holder releases; a renewal comes with its row", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const infos: string[] = [];
    const a = await open(name, "a");
    const b = await open(name, "b", { onInfo: (m) => infos.push(m) });
    await a.create(rec("a", 0));
    const stop = new AbortController();
    let woken = 0;
    const seen: WatchedRecord[] = [];
    let health: WatchHealth | undefined;
    b.watch((r) => (r === undefined ? woken++ : seen.push(r)), stop.signal, (h) => (health = h));
    await waitFor(() => infos.some((m) => m.includes("LISTEN/NOTIFY")), 5000, "notifications confirmed");
    await waitFor(() => health === "connected", 5000, "health connected");
    const before = woken;
    await a.update(rec("a", 0)); // a renewal wakes nobody: it is announced with the row
    await waitFor(() => seen.length > 0, 2000, "the renewal announced");
    const read = await b.get();
    assert.equal(seen.at(-1)?.raw, read.raw);
    assert.deepEqual(seen.at(-1)?.record, read.record);
    assert.equal(woken, before, "renewals are no wake-up");
    const start = performance.now();
    await a.update(rec("", 0));
    await waitFor(() => woken > before, 1000, "woken by the release");
    assert.ok(performance.now() - start < 500);
    stop.abort();
  });

  test("watch health: disconnected when the LISTEN connection is lost, connected again once listening", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const b = await open(name, "b");
    const states: WatchHealth[] = [];
    let woken = 0;
    const stop = new AbortController();
    t.after(() => stop.abort());
    b.watch(() => woken++, stop.signal, (h) => states.push(h));
    await waitFor(() => states.at(-1) === "connected", 5000, "connected");
    const before = woken;
    await srv().psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'");
    await waitFor(() => states.includes("disconnected"), 5000, "disconnected");
    // Back: connected, and one wake-up, since a change may have been missed meanwhile.
    await waitFor(() => states.at(-1) === "connected" && woken > before, 10_000, "connected again");
  });

  test("polling instead of notifications wakes a waiter and says so", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const warnings: string[] = [];
    const a = await open(name, "a");
    const b = await open(name, "b", { notify: "poll", pollIntervalMs: 200, onWarning: (m) => warnings.push(m) });
    await a.create(rec("a", 0));
    const stop = new AbortController();
    let woken = 0;
    b.watch(() => woken++, stop.signal);
    assert.match(warnings.join("\n"), /polling leader_run_leases every 200ms/);
    await delay(500);
    await a.update(rec("a", 0));
    await delay(500);
    assert.equal(woken, 0, "renewals do not wake pollers");
    await a.update(rec("", 0));
    await waitFor(() => woken > 0, 1500, "woken by polling");
    stop.abort();
  });

  test("a call blocked by another session's table lock is abandoned on abort within 100 ms, and times out by itself", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const a = await open(name, "a");
    await a.create(rec("a", 0));
    const blocker = new pg.Client({ connectionString: srv().url });
    await blocker.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE leader_run_leases IN ACCESS EXCLUSIVE MODE");
      const controller = new AbortController();
      const error = await abandonedWithin100ms(a.update(rec("a", 0), controller.signal), controller);
      assert.equal((error as Error).message, "stop");
      // Without an abort: the statement gives up within the statement timeout (RD/2).
      const { error: timedOut } = await rejectsWithin(a.get(), RD / 2 + 300);
      assert.ok(timedOut instanceof PostgresUnavailableError, String(timedOut));
    } finally {
      await blocker.query("ROLLBACK");
      await blocker.end();
    }
    const { record } = await a.get();
    assert.equal(record.holderIdentity, "a");
  });

  test("a frozen server: calls are abandoned within 100 ms of an abort, close() does not hang, and the lock recovers", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const a = await open(name, "a");
    await a.create(rec("a", 0));
    const other = await open(name, "other");
    srv().pause();
    try {
      const controller = new AbortController();
      await abandonedWithin100ms(a.update(rec("a", 0), controller.signal), controller);
      const { error } = await rejectsWithin(a.get(), RD / 2 + 300);
      assert.ok(error instanceof PostgresUnavailableError, String(error));
      const start = performance.now();
      await other.close();
      assert.ok(performance.now() - start < 1000, "close() returned");
    } finally {
      srv().resume();
    }
    await waitForAsync(async () => (await a.get().then(() => true, () => false)), 10_000, "reconnected");
  });

  test("a terminated backend is a failed call, then the lock reconnects", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const name = lease();
    const a = await open(name, "a");
    await a.create(rec("a", 0));
    await srv().psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'leader-run' AND query LIKE '%' || $1 || '%' OR (application_name = 'leader-run' AND state = 'idle')", [name]);
    let failures = 0;
    await waitForAsync(
      async () => {
        try {
          await a.update(rec("a", 0));
          return true;
        } catch (error) {
          failures++;
          assert.ok(!(error instanceof PermanentLockError), String(error));
          return false;
        }
      },
      10_000,
      "renewed after reconnecting",
    );
    assert.ok(failures <= 3);
  });

  test("a role without DDL rights: a clear error without the table, works on a table created from the documented SQL", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const table = `jobs_${process.pid}`;
    await assert.rejects(
      openPostgresLock(srv().jobUrl, { name: "x", identity: "j", leaseDurationMs: 3000, renewDeadlineMs: RD, env: {}, table }),
      (e: unknown) => e instanceof PermanentLockError && /may not create them/.test(e.message) && e.message.includes(table) && !e.message.includes(srv().jobPassword),
    );
    await srv().psql(createTablesSql(parseTableName(table)));
    await assert.rejects(
      openPostgresLock(srv().jobUrl, { name: "x", identity: "j", leaseDurationMs: 3000, renewDeadlineMs: RD, env: {}, table }),
      (e: unknown) => e instanceof PermanentLockError && /may not SELECT/.test(e.message) && e.message.includes(table),
    );
    await srv().psql(`GRANT SELECT ON ${table}, ${table}_terms TO leader_run_job`);
    const readOnly = await open("x", "j", { table }, srv().jobUrl);
    await assert.rejects(readOnly.create(rec("j", 0)), (e: unknown) => e instanceof PermanentLockError && /may not INSERT/.test(e.message));
    await srv().psql(grantSql(parseTableName(table), "leader_run_job"));
    const job = await open("y", "j", { table }, srv().jobUrl);
    await assert.rejects(job.get(), NotFoundError);
    await job.create(rec("j", 0));
    await job.update(rec("", 0));
    const rows = await srv().psql(`SELECT holder_identity FROM ${table} WHERE name = 'y'`);
    assert.deepEqual(rows, [{ holder_identity: "" }]);
  });

  test("bad credentials are refused for good, without the password in the message; PGPASSFILE works", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const wrong = srv().url.replace(srv().superPassword, "wrong-password");
    await assert.rejects(
      openPostgresLock(wrong, { name: "x", identity: "a", leaseDurationMs: 3000, renewDeadlineMs: RD, env: {} }),
      (e: unknown) => e instanceof PermanentLockError && /rejected role "postgres"/.test(e.message) && !e.message.includes("wrong-password"),
    );
    const noPassword = `postgres://postgres@127.0.0.1:${srv().port}/postgres`;
    await assert.rejects(
      openPostgresLock(noPassword, { name: "x", identity: "a", leaseDurationMs: 3000, renewDeadlineMs: RD, env: { PGPASSFILE: "/nonexistent" } }),
      (e: unknown) => e instanceof PermanentLockError && /PGPASSWORD, PGPASSFILE/.test(e.message),
    );
    const passfile = join(srv().dir, "pgpass");
    writeFileSync(passfile, `# comment\nother:*:*:*:nope\n127.0.0.1:${srv().port}:*:postgres:${srv().superPassword}\n`, { mode: 0o600 });
    const lock = await open("pgpass", "a", { env: { PGPASSFILE: passfile } }, noPassword);
    await assert.rejects(lock.get(), NotFoundError);
    const viaEnv = await open("pgpassword", "a", { env: { PGPASSWORD: srv().superPassword, PGHOST: "127.0.0.1", PGPORT: String(srv().port), PGUSER: "postgres" } }, "postgres:///postgres");
    await assert.rejects(viaEnv.get(), NotFoundError);
  });

  test("TLS: verify-full against the right CA works, a wrong CA is refused for good", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const s = srv();
    const good = `postgres://postgres:${s.superPassword}@localhost:${s.port}/postgres?application_name=leader-run-tls&sslmode=verify-full&sslrootcert=${encodeURIComponent(s.caFile ?? "")}`;
    const lock = await open("tls", "a", {}, good);
    await lock.create(rec("a", 0));
    const ssl = await s.psql("SELECT bool_and(ssl) AS ssl FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE application_name = 'leader-run-tls'");
    assert.equal(ssl[0]?.ssl, true);
    const envTls = await open("tls-env", "a", { env: { PGSSLMODE: "verify-ca", PGSSLROOTCERT: s.caFile ?? "" } }, `postgres://postgres:${s.superPassword}@127.0.0.1:${s.port}/postgres`);
    await assert.rejects(envTls.get(), NotFoundError);
    const bad = `postgres://postgres:${s.superPassword}@localhost:${s.port}/postgres?sslmode=verify-full&sslrootcert=${encodeURIComponent(s.otherCaFile ?? "")}`;
    await assert.rejects(
      openPostgresLock(bad, { name: "tls", identity: "b", leaseDurationMs: 3000, renewDeadlineMs: RD, env: {} }),
      (e: unknown) => e instanceof PermanentLockError && /TLS/.test(e.message),
    );
  });
});

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(check: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await delay(10);
  }
}

async function waitForAsync(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await delay(100);
  }
}

describe("PostgreSQL lock settings", () => {
  test("a missing schema, a missing database and a bad table name are clear errors", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const base = { name: "x", identity: "a", leaseDurationMs: 3000, renewDeadlineMs: RD, env: {} };
    await assert.rejects(openPostgresLock(srv().url, { ...base, table: "nosuchschema.leases" }), (e: unknown) => e instanceof PermanentLockError && /schema/.test(e.message) && /nosuchschema\.leases/.test(e.message));
    await assert.rejects(openPostgresLock(srv().url.replace(/\/postgres$/, "/nosuchdb"), base), (e: unknown) => e instanceof PermanentLockError && /nosuchdb/.test(e.message));
    await assert.rejects(openPostgresLock(srv().url, { ...base, table: "Bad-Name" }), /table name "Bad-Name"/);
    await srv().psql("CREATE SCHEMA IF NOT EXISTS ops");
    const lock = await open("x", "a", { table: "ops.locks" });
    await lock.create(rec("a", 0));
    const rows = await srv().psql("SELECT holder_identity FROM ops.locks");
    assert.deepEqual(rows, [{ holder_identity: "a" }]);
    // libpq's options= chooses the schema of an unqualified table.
    const viaPath = await open("y", "a", {}, `${srv().url}?options=${encodeURIComponent("-c search_path=ops")}`);
    await viaPath.create(rec("a", 0));
    assert.deepEqual(await srv().psql("SELECT name FROM ops.leader_run_leases"), [{ name: "y" }]);
  });
});

describe("PostgreSQL notifications", () => {
  test("when the test notification never arrives (as behind a transaction-mode pooler), it polls and says so", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const { Notifier } = await import("../../src/locks/postgres/notify.js");
    const { resolvePostgresTarget } = await import("../../src/locks/postgres/config.js");
    const modes: string[] = [];
    let version = "v1";
    const notifier = new Notifier({
      target: resolvePostgresTarget(srv().url, {}),
      timeoutMs: 1000,
      channel: "leader_run_leases",
      lease: "n",
      mode: "auto",
      pollIntervalMs: 100,
      // What a pooler does to a NOTIFY from another server connection: it is accepted, nothing arrives.
      probe: () => Promise.resolve(),
      poll: () => Promise.resolve(version),
      onMode: (mode, why) => modes.push(`${mode}: ${why ?? ""}`),
      decode: () => undefined,
    });
    t.after(() => notifier.close());
    const stop = new AbortController();
    let woken = 0;
    const health: WatchHealth[] = [];
    notifier.add(() => woken++, stop.signal, (h) => health.push(h));
    await waitFor(() => modes.length > 0, 5000, "a decision");
    assert.deepEqual(health, [], "never connected: polling is no healthy watch");
    assert.match(modes[0] ?? "", /^poll: a test notification did not arrive/);
    const before = woken;
    await delay(300);
    version = "v2";
    await waitFor(() => woken > before, 1000, "woken by polling");
    stop.abort();
  });
});
