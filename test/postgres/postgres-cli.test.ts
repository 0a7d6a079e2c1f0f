/**
 * The real `leader-run` (bin/leader-run.js, built) on a real PostgreSQL server: hand-over by
 * LISTEN/NOTIFY, status and release, a server restart, a frozen server, a terminated backend,
 * permission and authentication failures. Run `npm run build` first.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { BIN, LeaderRunProcess, assertBuilt, delay, isRunning, waitFor, type LogLine } from "../e2e/support.js";
import { createTablesSql, parseTableName } from "../../src/locks/postgres/index.js";
import { PG_BIN, requirePostgres, startPostgres, type PgServer } from "../support/postgres-server.js";

/** Errors are JSON lines under --log-format json: compare their text with quotes unescaped. */
const unescaped = (text: string): string => text.replace(/\\"/g, '"');

let server: PgServer | undefined;
const procs: LeaderRunProcess[] = [];
let seq = 0;
const leaseName = (): string => `cli-${process.pid}-${++seq}`;

before(async () => {
  if (PG_BIN !== undefined) {
    assertBuilt();
    server = await startPostgres({ tls: true });
  }
});
after(async () => {
  await Promise.all(procs.map((p) => stop(p)));
  await server?.stop();
});

function srv(): PgServer {
  assert.ok(server, "server started");
  return server;
}

/** Runs leader-run with JSON logs; the superuser URL in LEADER_RUN_LOCK unless `--lock` is given. */
function run(label: string, args: string[], env: NodeJS.ProcessEnv = {}): LeaderRunProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, LEADER_RUN_LOG_FORMAT: "json", ...env },
  });
  const p = new LeaderRunProcess(label, child);
  procs.push(p);
  return p;
}

async function stop(p: LeaderRunProcess): Promise<void> {
  if (p.exitInfo !== undefined || p.process.exitCode !== null) return;
  p.signal("SIGTERM");
  try {
    await p.exit(10_000);
  } catch {
    p.signal("SIGKILL");
  }
}

function childPids(p: LeaderRunProcess): number[] {
  return p
    .logs()
    .filter((l) => l.event === "child_started")
    .map((l) => Number(l.pid));
}

async function leaderAndStandby(a: LeaderRunProcess, b: LeaderRunProcess): Promise<[LeaderRunProcess, LeaderRunProcess]> {
  await waitFor("a leader", () => childPids(a).length > 0 || childPids(b).length > 0, 20_000);
  const [leader, standby] = childPids(a).length > 0 ? [a, b] : [b, a];
  await standby.waitForStandby(10_000);
  return [leader, standby];
}

// RP 4s: only a notification can explain a take-over well under it (RD > 1.2 RP, RD + grace < LD).
const SLOW = ["--lease-duration", "10s", "--renew-deadline", "6s", "--retry-period", "4s", "--kill-grace", "1s"];
const FAST = ["--lease-duration", "5s", "--renew-deadline", "3s", "--retry-period", "500ms", "--kill-grace", "500ms"];

// Sequential: real processes with second-scale leases need the CPU this shared machine has left.
describe("leader-run --lock postgres:// (real processes)", () => {
  test("two shells: one sleeps; SIGTERM hands over and the other's sleep starts within a second; the table and status show the holder", async (t) => {
    if (!requirePostgres(t)) return;
    const name = leaseName();
    const env = { LEADER_RUN_LOCK: srv().url };
    const a = run("a", ["--name", name, "--identity", "a", ...SLOW, "--", "sleep", "1000"], env);
    const b = run("b", ["--name", name, "--identity", "b", ...SLOW, "--", "sleep", "1000"], env);
    const [leader, standby] = await leaderAndStandby(a, b);
    const holder = leader === a ? "a" : "b";
    const rows = await srv().psql("TABLE leader_run_leases");
    const row = rows.find((r) => r.name === name);
    assert.equal(row?.holder_identity, holder);

    const status = run("status", ["status", "--name", name, "--output", "json"], env);
    assert.equal(await status.exitCode(), 0, status.stderr);
    const shown = JSON.parse(status.stdout) as Record<string, unknown>;
    assert.equal(shown.holder, holder);
    assert.equal(shown.term, 0);
    assert.equal(shown.state, "live");
    assert.ok(!status.stdout.includes(srv().superPassword) && !status.stderr.includes(srv().superPassword));

    await waitFor("the standby's notification listener", () => standby.stderr.includes("LISTEN/NOTIFY"), 10_000);
    const termAt = performance.now();
    leader.signal("SIGTERM");
    await waitFor("the standby's child", () => childPids(standby).length > 0, 5000);
    const took = performance.now() - termAt;
    assert.ok(took < 1000, `hand-over took ${took.toFixed(0)}ms`);
    assert.notEqual((await leader.exit()).code, 76, leader.stderr);
    assert.ok(!isRunning(childPids(leader)[0] ?? -1));
    const acquired = standby.logs().find((l) => l.event === "acquired");
    assert.equal(acquired?.term, 1);

    // release --force: the standby (now leader) sees a foreign holder ("") and stops its child.
    const release = run("release", ["release", "--name", name, "--force"], env);
    assert.equal(await release.exitCode(), 0, release.stderr);
    assert.match(release.stdout, /released lease .* term 1/);
    await standby.waitForLog("lost", 10_000);
    await stop(standby);
    const after = run("status", ["status", "--name", name, "--output", "json"], env);
    assert.equal(await after.exitCode(), 3, after.stderr); // nobody holds it
    assert.equal((JSON.parse(after.stdout) as Record<string, unknown>).state, "released");
  });

  test("a server restart: the lease survives, the leader keeps or regains it, never two children at once", async (t) => {
    if (!requirePostgres(t)) return;
    const name = leaseName();
    const env = { LEADER_RUN_LOCK: srv().url };
    const a = run("a", ["--name", name, "--identity", "a", ...FAST, "--", "sleep", "1000"], env);
    const b = run("b", ["--name", name, "--identity", "b", ...FAST, "--", "sleep", "1000"], env);
    const [leader, standby] = await leaderAndStandby(a, b);
    const before = (await srv().psql("SELECT holder_identity, leader_transitions FROM leader_run_leases WHERE name = $1", [name]))[0];
    await srv().restart();
    const afterRestart = (await srv().psql("SELECT holder_identity, leader_transitions FROM leader_run_leases WHERE name = $1", [name]))[0];
    assert.deepEqual(afterRestart, before, "the row survived the restart");
    // Renewals resume once the lock reconnects.
    const restartedAt = performance.now();
    // Past the renew deadline: by then the leader has renewed on a new connection or stopped its child.
    await delay(4000);
    assertNoOverlap([leader, standby]);
    const running = [leader, standby].filter((p) => {
      const pids = childPids(p);
      return pids.length > 0 && isRunning(pids[pids.length - 1] ?? -1);
    });
    assert.equal(running.length, 1, `one child runs ${(performance.now() - restartedAt).toFixed(0)}ms after the restart\n${leader}\n${standby}`);
    await Promise.all([stop(a), stop(b)]);
    assertNoOverlap([leader, standby]);
  });

  test("a server paused beyond the renew deadline: the child stops by the deadline and leader-run exits 76", async (t) => {
    if (!requirePostgres(t)) return;
    const name = leaseName();
    const leader = run("a", ["--name", name, ...FAST, "--on-lost", "exit", "--", "sleep", "1000"], { LEADER_RUN_LOCK: srv().url });
    await leader.waitForLog("child_started", 20_000);
    await delay(700);
    const child = childPids(leader)[0] ?? -1;
    const pausedAt = performance.now();
    srv().pause();
    try {
      const exit = await leader.exit(3000 + 5000);
      const took = performance.now() - pausedAt;
      assert.equal(exit.code, 76, leader.stderr);
      const lost = leader.logs().find((l) => l.event === "lost");
      assert.equal(lost?.reason, "deadline");
      assert.ok(!isRunning(child), "the child is gone");
      // Gone before the lease could pass (LD 5s after the last renewal, which came before the pause).
      assert.ok(took < 5000, `exited ${took.toFixed(0)}ms after the pause`);
      assert.doesNotMatch(leader.stderr, /at .*\.js:\d+|Unhandled/);
    } finally {
      srv().resume();
    }
  });

  test("pg_terminate_backend of leader-run's connections: renewals continue on a new connection, the child keeps running", async (t) => {
    if (!requirePostgres(t)) return;
    const name = leaseName();
    const leader = run("a", ["--name", name, ...FAST, "--log-level", "debug", "--", "sleep", "1000"], { LEADER_RUN_LOCK: srv().url });
    await leader.waitForLog("child_started", 20_000);
    const killed = await srv().psql("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE application_name = 'leader-run'");
    assert.ok(killed.length >= 1);
    const mark = leader.logs().length;
    await waitFor("a renewal after the termination", () => leader.logs().slice(mark).some((l) => l.event === "renewed"), 5000);
    await delay(1000);
    assert.ok(!leader.logs().some((l) => l.event === "lost"), leader.stderr);
    assert.equal(childPids(leader).length, 1);
    assert.ok(isRunning(childPids(leader)[0] ?? -1));
    await stop(leader);
  });

  test("permission denied and authentication failure exit 69 with one line naming the table and verb; the password never shows", async (t) => {
    if (!requirePostgres(t)) return;
    const table = `cli_perm_${process.pid}`;
    await srv().psql(createTablesSql(parseTableName(table)));
    await srv().psql(`GRANT SELECT ON ${table}, ${table}_terms TO leader_run_job`);
    const denied = run("denied", ["--lock", srv().jobUrl.replace(/:[^:@/]+@/, "@"), "--pg-table", table, "--name", leaseName(), "--", "true"], { PGPASSWORD: srv().jobPassword });
    assert.equal(await denied.exitCode(), 69, denied.stderr);
    assert.match(unescaped(denied.stderr), new RegExp(`may not INSERT ${table}`));
    const wrong = run("wrong", ["--name", leaseName(), "--", "true"], { LEADER_RUN_LOCK: srv().url.replace(srv().superPassword, "not-the-password") });
    assert.equal(await wrong.exitCode(), 69, wrong.stderr);
    assert.match(unescaped(wrong.stderr), /rejected role "postgres"/);
    for (const p of [denied, wrong]) {
      assert.ok(!p.stderr.includes(srv().jobPassword) && !p.stderr.includes("not-the-password"), p.stderr);
      assert.equal(p.logs().filter((l: LogLine) => l.level === "error").length + (p.stderr.match(/^leader-run:/gm)?.length ?? 0), 1, p.stderr);
    }
    const usage = run("usage", ["--pg-table", "x", "--name", leaseName(), "--", "true"], { LEADER_RUN_LOCK: "file:" });
    assert.equal(await usage.exitCode(), 64, usage.stderr);
  });
});

describe("leader-run --lock postgres:// settings from the libpq environment", () => {
  test("PGPASSFILE, PGSSLMODE=verify-full and PGSSLROOTCERT work; a wrong CA exits 69; the child's LEADER_RUN_LOCK has no password", async (t) => {
    if (!requirePostgres(t, { tls: true })) return;
    const s = srv();
    const passfile = join(s.dir, "cli-pgpass");
    writeFileSync(passfile, `localhost:${s.port}:postgres:postgres:${s.superPassword}\n`, { mode: 0o600 });
    const url = `postgres://postgres@localhost:${s.port}/postgres`;
    const env = { PGPASSFILE: passfile, PGSSLMODE: "verify-full", PGSSLROOTCERT: s.caFile ?? "", PGAPPNAME: "leader-run-cli-tls" };
    const ok = run("tls", ["--lock", url, "--name", leaseName(), "--no-wait", "--", "sh", "-c", 'echo "$LEADER_RUN_LOCK"'], env);
    assert.equal(await ok.exitCode(), 0, ok.stderr);
    assert.equal(ok.stdout.trim(), url);
    const bad = run("bad-ca", ["--lock", url, "--name", leaseName(), "--no-wait", "--", "true"], { ...env, PGSSLROOTCERT: s.otherCaFile ?? "" });
    assert.equal(await bad.exitCode(), 69, bad.stderr);
    assert.match(unescaped(bad.stderr), /TLS to PostgreSQL at localhost:\d+\/postgres failed/);
    const plain = run("plain", ["--lock", url, "--name", leaseName(), "--no-wait", "--", "true"], { PGPASSFILE: "/nonexistent" });
    assert.equal(await plain.exitCode(), 69, plain.stderr);
    assert.match(unescaped(plain.stderr), /asks role "postgres" for a password but none is set/);
  });
});

/** Child intervals from the logs (start to exit, or to now) must not overlap. */
function assertNoOverlap(list: LeaderRunProcess[]): void {
  const intervals: { who: string; start: number; end: number }[] = [];
  for (const p of list) {
    const lines = p.logs();
    let start: number | undefined;
    for (const l of lines) {
      const at = Date.parse(String(l.time ?? l.ts ?? ""));
      if (l.event === "child_started") start = at;
      if (l.event === "child_exited" && start !== undefined) {
        intervals.push({ who: p.label, start, end: at });
        start = undefined;
      }
    }
    if (start !== undefined) intervals.push({ who: p.label, start, end: Number.POSITIVE_INFINITY });
  }
  intervals.sort((x, y) => x.start - y.start);
  for (let i = 1; i < intervals.length; i++) {
    const prev = intervals[i - 1];
    const cur = intervals[i];
    if (prev && cur) assert.ok(cur.start >= prev.end, `two children at once: ${JSON.stringify(intervals)}`);
  }
}
