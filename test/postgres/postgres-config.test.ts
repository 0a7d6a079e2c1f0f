/** Connection settings from the URL and the libpq environment, table names and ~/.pgpass, without a server. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PostgresConfigError, parseTableName, readPassfile, resolvePostgresTarget } from "../../src/locks/postgres/config.js";
import { createTablesSql, grantSql } from "../../src/locks/postgres/sql.js";

describe("PostgreSQL connection settings", () => {
  test("the URL wins over the environment, the environment over the defaults", () => {
    const t = resolvePostgresTarget("postgres://app:secret@db.example:6432/locks", { PGHOST: "other", PGUSER: "u", PGPASSWORD: "p" });
    assert.equal(t.host, "db.example");
    assert.equal(t.port, 6432);
    assert.equal(t.database, "locks");
    assert.equal(t.user, "app");
    assert.equal(t.password, "secret");
    assert.equal(t.sslmode, "disable");
    assert.equal(t.tls, undefined);
    const e = resolvePostgresTarget("postgres:///", { PGHOST: "h", PGPORT: "5433", PGDATABASE: "d", PGUSER: "u", PGPASSWORD: "p", HOME: "/home/u" });
    assert.deepEqual([e.host, e.port, e.database, e.user, e.password, e.passfile], ["h", 5433, "d", "u", "p", "/home/u/.pgpass"]);
    const d = resolvePostgresTarget("postgres://h", { USER: "me", HOME: "/home/me" });
    assert.deepEqual([d.port, d.user, d.database, d.password], [5432, "me", "me", undefined]);
    assert.equal(resolvePostgresTarget("postgres://h/db?passfile=/etc/pw", {}).passfile, "/etc/pw");
    assert.equal(resolvePostgresTarget("postgres:///db?host=/run/postgresql", {}).host, "/run/postgresql");
    assert.equal(resolvePostgresTarget("postgres://h/db?options=-c%20search_path%3Dops", {}).serverOptions, "-c search_path=ops");
    assert.equal(resolvePostgresTarget("postgres://h/db", { PGOPTIONS: "-c search_path=x" }).serverOptions, "-c search_path=x");
  });

  test("TLS modes follow libpq; PGSSL* fill in what the URL leaves out; bad modes and missing files are config errors", () => {
    const dir = mkdtempSync(join(tmpdir(), "leader-run-pgcfg-"));
    try {
      const ca = join(dir, "ca.pem");
      writeFileSync(ca, "CA PEM");
      const full = resolvePostgresTarget(`postgres://h/db?sslmode=verify-full&sslrootcert=${ca}`, {});
      assert.equal(full.sslmode, "verify-full");
      assert.equal(full.tls?.ca, "CA PEM");
      assert.equal(full.tls?.rejectUnauthorized, undefined);
      const require = resolvePostgresTarget("postgres://h/db?sslmode=require", {});
      assert.equal(require.tls?.rejectUnauthorized, false, "require does not verify the certificate");
      const verifyCa = resolvePostgresTarget("postgres://h/db", { PGSSLMODE: "verify-ca", PGSSLROOTCERT: ca });
      assert.equal(verifyCa.sslmode, "verify-ca");
      assert.equal(verifyCa.tls?.ca, "CA PEM");
      assert.equal(typeof verifyCa.tls?.checkServerIdentity, "function", "verify-ca skips the host name check");
      assert.equal(resolvePostgresTarget("postgres://h/db?sslmode=disable", { PGSSLMODE: "require" }).tls, undefined);
      assert.equal(resolvePostgresTarget("postgres://h/db", { PGSSLMODE: "prefer" }).sslmode, "prefer");
      assert.throws(() => resolvePostgresTarget("postgres://h/db?sslmode=sometimes", {}), PostgresConfigError);
      assert.throws(
        () => resolvePostgresTarget(`postgres://u:pw@h/db?sslmode=verify-full&sslrootcert=${join(dir, "missing.pem")}`, {}),
        (e: unknown) => e instanceof PostgresConfigError && /missing\.pem/.test(e.message) && !e.message.includes("pw@"),
      );
      assert.throws(() => resolvePostgresTarget(`postgres://h/db?sslmode=require&sslcert=${ca}`, {}), /needs both sslcert and sslkey/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("table names: [schema.]table in lower case, short enough for the derived names", () => {
    assert.deepEqual(parseTableName("leader_run_leases"), { table: "leader_run_leases" });
    assert.deepEqual(parseTableName("ops.leases"), { schema: "ops", table: "leases" });
    for (const bad of ["", "Leases", "a.b.c", "x;drop", "1x", `t${"x".repeat(57)}`, "a..b"]) {
      assert.throws(() => parseTableName(bad), PostgresConfigError, bad);
    }
    const sql = createTablesSql({ schema: "ops", table: "leases" });
    assert.match(sql, /CREATE TABLE IF NOT EXISTS ops\.leases \(/);
    assert.match(sql, /CREATE TABLE IF NOT EXISTS ops\.leases_terms \(/);
    assert.equal(grantSql({ table: "l" }, "job"), "GRANT SELECT, INSERT, UPDATE ON l, l_terms TO job;");
  });

  test("the password file: first matching line, * wildcards, escapes; ignored when others may read it", () => {
    const dir = mkdtempSync(join(tmpdir(), "leader-run-pgpass-"));
    try {
      const file = join(dir, "pgpass");
      writeFileSync(file, "# comment\nh:5432:other:u:nope\nh:*:db:u:pa\\:ss\\\\word\n*:*:*:*:fallback\n", { mode: 0o600 });
      const target = { ...resolvePostgresTarget("postgres://u@h/db", {}), passfile: file };
      assert.equal(readPassfile(target), "pa:ss\\word");
      assert.equal(readPassfile({ ...target, database: "x" }), "fallback");
      writeFileSync(file, "*:*:*:*:open\n");
      chmodSync(file, 0o644);
      assert.equal(readPassfile(target), undefined);
      assert.equal(readPassfile({ ...target, passfile: join(dir, "none") }), undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("--pg-table", () => {
  test("flag and env twin reach the options; other backends and bad names are usage errors", async () => {
    const { parseCommandLine } = await import("../../src/cli/options.js");
    const { UsageError } = await import("../../src/cli/errors.js");
    const parse = async (argv: string[], env: NodeJS.ProcessEnv = {}): Promise<string | undefined> => {
      const parsed = await parseCommandLine(argv, { env, cwd: "/srv" });
      if (parsed.command !== "run") throw new Error("not run");
      return parsed.options.pgTable;
    };
    assert.equal(await parse(["--lock", "postgres://db/x", "--pg-table", "ops.leases", "--", "true"]), "ops.leases");
    assert.equal(await parse(["--lock", "postgres://db/x", "--", "true"], { LEADER_RUN_PG_TABLE: "jobs" }), "jobs");
    assert.equal(await parse(["--lock", "postgres://db/x", "--", "true"]), undefined);
    await assert.rejects(parse(["--pg-table", "x", "--", "true"]), (e: unknown) => e instanceof UsageError && /only for --lock postgres/.test(e.message));
    await assert.rejects(parse(["--lock", "postgres://db/x", "--pg-table", "Bad.Name", "--", "true"]), (e: unknown) => e instanceof UsageError && /\[schema\.\]table/.test(e.message));
  });
});
