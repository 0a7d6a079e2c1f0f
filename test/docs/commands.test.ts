/**
 * Every shell command in the documentation runs, exactly as written, and does what the docs say.
 * The tests are generated from the Markdown at load time, so a new ```sh block is picked up on its
 * own; support/shell.ts has the rules (which blocks, the sandbox, and what is substituted: only where
 * the lease lives). A block that cannot run here carries `<!-- not run: why -->` and shows up as
 * skipped with that reason; `<!-- run: exit N -->` declares the exit code its commands end with.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { parseCommandLine } from "../../src/cli/options.js";
import { startEtcd, hasEtcd, requireEtcd, type EtcdCluster } from "../support/etcd-server.js";
import { startLeaseApiServer, type LeaseApiServer } from "../support/lease-api-server.js";
import { requirePostgres, startPostgres, type PgServer } from "../support/postgres-server.js";
import { hasRedis, requireRedis, RedisServer } from "../support/redis-server.js";
import { documentationFiles, readCodeBlocks, ROOT, type CodeBlock } from "./support/markdown.js";
import { commandsOf, makeSandbox, notRunReason, runShell, SHELL_LANGS, substitute, type Backends, type DocCommand, type Need } from "./support/shell.js";

/** What the README's Redis example embeds in its URL; the test server is started with it. */
const DOC_REDIS_PASSWORD = "secret";
/** The etcd user of docs/etcd.md's URLs (`etcd://app@…`); its password stands for the docs' `…`. */
const DOC_ETCD_USER = "app";
/** The role and database of docs/postgres.md's URLs (`postgres://jobs@db.internal/app`). */
const DOC_PG_ROLE = "jobs";
const DOC_PG_DATABASE = "app";
const TIMEOUT_MS = 30_000;

const blocks: CodeBlock[] = documentationFiles().flatMap((f) => readCodeBlocks(f).filter((b) => SHELL_LANGS.has(b.lang)));

let redis: RedisServer | undefined;
let kube: LeaseApiServer | undefined;
let etcd: EtcdCluster | undefined;
let postgres: PgServer | undefined;
const backends: Backends = {};
const cleanups: Array<() => void> = [];

// Servers start when the first command needing them runs, so a docs change that needs none stays fast.
const starting = new Map<Need, Promise<void>>();
function ensureStarted(need: Need): Promise<void> {
  let started = starting.get(need);
  if (started === undefined) {
    started = startBackend(need);
    starting.set(need, started);
  }
  return started;
}

async function startBackend(need: Need): Promise<void> {
  switch (need) {
    case "redis":
      redis = await RedisServer.start({ password: DOC_REDIS_PASSWORD });
      backends.redis = { port: redis.port, password: DOC_REDIS_PASSWORD };
      return;
    case "kubernetes": {
      kube = await startLeaseApiServer();
      const sandbox = makeSandbox();
      cleanups.push(sandbox.cleanup);
      backends.kubeconfig = kube.writeKubeconfig(join(sandbox.dir, "kubeconfig.json"));
      return;
    }
    case "etcd": {
      const password = randomBytes(9).toString("hex");
      // leader-run's default key prefix; a doc using another prefix needs a grant here too.
      etcd = await startEtcd({ auth: { users: { [DOC_ETCD_USER]: { password, readwritePrefix: "leader-run/" } } } });
      backends.etcd = { endpoints: etcd.endpoints, user: DOC_ETCD_USER, password };
      return;
    }
    case "postgres": {
      const password = randomBytes(9).toString("hex");
      postgres = await startPostgres();
      // The owner of its database, as a job's own database is: leader-run creates its tables there.
      await postgres.psql(`CREATE ROLE ${DOC_PG_ROLE} LOGIN PASSWORD '${password}'`);
      await postgres.psql(`CREATE DATABASE ${DOC_PG_DATABASE} OWNER ${DOC_PG_ROLE}`);
      backends.postgres = { port: postgres.port, password };
      return;
    }
  }
}

/** False (the test skipped, or failed under CI=true) when a server the command needs is not installed. */
function available(t: TestContext, need: Need): boolean {
  switch (need) {
    case "redis":
      return hasRedis() || requireRedis(t);
    case "etcd":
      return hasEtcd() || requireEtcd(t);
    case "postgres":
      return requirePostgres(t);
    case "kubernetes":
      return true;
  }
}

// Commands sharing a server run one after another in document order, as a reader types them: the
// PostgreSQL quick start's `status` and `psql` look at the lease its first line took and released.
const lastOnServer = new Map<string, Promise<unknown>>();
function inDocumentOrder<T>(needs: Need[], run: () => Promise<T>): Promise<T> {
  if (needs.length === 0) return run();
  const key = [...needs].sort().join("+");
  const ran = (lastOnServer.get(key) ?? Promise.resolve()).then(run);
  lastOnServer.set(key, ran.catch(() => undefined));
  return ran;
}

before(() => {
  assert.ok(existsSync(join(ROOT, "dist", "bin", "main.js")), "dist/bin/main.js is missing: run `npm run build` first (npm test builds before testing)");
});
after(async () => {
  await redis?.stop();
  await kube?.close();
  await etcd?.stop();
  await postgres?.stop();
  for (const c of cleanups) c();
});

function expectedExit(block: CodeBlock): number {
  const m = /^run:\s*exit\s+(\d+)\s*$/.exec(block.marker ?? "");
  return m ? Number(m[1]) : 0;
}

function baseEnv(path: string, home: string): NodeJS.ProcessEnv {
  // A clean environment, as a new user's shell or cron would have: no LEADER_RUN_* or KUBECONFIG of ours.
  return { PATH: path, HOME: home, LANG: process.env.LANG ?? "C.UTF-8", LEADER_RUN_CHECKOUT: ROOT };
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  report: string;
}

async function runDocCommand(t: TestContext, cmd: DocCommand, expectExit: number): Promise<Ran | undefined> {
  const sandbox = makeSandbox();
  t.after(sandbox.cleanup);
  const { needs } = substitute(cmd.text, sandbox.dir, {});
  for (const need of needs) if (!available(t, need)) return undefined;
  // Synchronously up to here, so commands queue for their server in the order the tests start.
  const [sub, r] = await inDocumentOrder(needs, async () => {
    await Promise.all(needs.map(ensureStarted));
    const substituted = substitute(cmd.text, sandbox.dir, backends);
    return [substituted, await runShell(substituted.text, { cwd: sandbox.cwd, env: { ...baseEnv(sandbox.path, sandbox.dir), ...substituted.env }, timeoutMs: TIMEOUT_MS })] as const;
  });
  const report = [
    `${cmd.file}:${cmd.line}: ${cmd.text}`,
    `  ran: ${sub.text}${sub.changes.length ? `\n  substituted: ${sub.changes.join("; ")}` : ""}`,
    `  exit: ${r.timedOut ? `killed after ${TIMEOUT_MS} ms (never ended)` : (r.code ?? r.signal)}`,
    `  stdout: ${r.stdout.trim().split("\n").slice(-5).join("\n          ")}`,
    `  stderr: ${r.stderr.trim().split("\n").slice(-8).join("\n          ")}`,
  ].join("\n");
  assert.ok(!r.timedOut, `did not finish:\n${report}`);
  assert.equal(r.code, expectExit, `expected exit ${expectExit}:\n${report}`);
  return { code: r.code, stdout: r.stdout, stderr: r.stderr, report };
}

// Each command has its own sandbox and the docs' examples use distinct lease names, so they can run
// side by side; most of their time is leader-run and its backend client starting up.
describe("documented shell commands, run as written", { concurrency: 4 }, () => {
  test("the docs have the commands this suite exists for (quick start, cron, the backends)", () => {
    const texts = blocks.flatMap((b) => commandsOf(b).map((c) => c.text));
    for (const expected of [/\.\/bin\/leader-run\.js -- node -e/, /--no-wait -- \.\/backup\.sh/, /--wait 5m/, /redis:\/\//, /etcd:\/\//, /postgres:\/\//, /psql -h /, /--lock (k8s|kubernetes):/]) {
      assert.ok(texts.some((x) => expected.test(x)), `no documented command matches ${expected}; found:\n${texts.join("\n")}`);
    }
  });

  for (const block of blocks) {
    const reason = notRunReason(block);
    const commands = commandsOf(block);
    if (reason !== undefined) {
      test(`${block.file}:${block.line}: ${commands.map((c) => c.text).join(" ; ")}`, (t) => {
        t.skip(`not run (marked in ${block.file}): ${reason}`);
      });
      continue;
    }
    for (const cmd of commands) {
      test(`${cmd.file}:${cmd.line}: ${cmd.text}`, { timeout: TIMEOUT_MS * 4 }, async (t) => {
        await runDocCommand(t, cmd, expectedExit(block));
      });
    }
  }
});

describe("what the docs claim about those commands", () => {
  const find = (pattern: RegExp): DocCommand => {
    const found = blocks.flatMap((b) => (notRunReason(b) === undefined ? commandsOf(b) : [])).find((c) => pattern.test(c.text));
    assert.ok(found, `no documented command matches ${pattern}`);
    return found;
  };

  test("the quick start prints its message from the one copy that runs", { timeout: TIMEOUT_MS * 2 }, async (t) => {
    const cmd = find(/\.\/bin\/leader-run\.js -- node -e/);
    const message = /console\.log\('([^']*)'\)/.exec(cmd.text)?.[1];
    assert.ok(message, `${cmd.file}:${cmd.line}: no console.log('…') in ${cmd.text}`);
    const ran = await runDocCommand(t, cmd, 0);
    if (ran) assert.equal(ran.stdout.trim(), message, ran.report);
  });

  test("the etcd quick start runs its command as the leader, with a fencing token", { timeout: TIMEOUT_MS * 4 }, async (t) => {
    const ran = await runDocCommand(t, find(/--lock etcd:\/\/\S+ -- \.\/worker/), 0);
    if (ran) assert.match(ran.stdout, /^worker ran as term [1-9]\d* of /m, ran.report);
  });

  test("the PostgreSQL quick start's psql shows the lease row its first line wrote", { timeout: TIMEOUT_MS * 4 }, async (t) => {
    // Its first line again, so this test also stands alone (e.g. run with --test-name-pattern).
    if (!(await runDocCommand(t, find(/--lock postgres:\/\/\S+ --name nightly -- /), 0))) return;
    const ran = await runDocCommand(t, find(/psql -h \S+ .*table leader_run_leases/), 0);
    if (ran) assert.match(ran.stdout, /^\s*nightly\s*\|/m, ran.report);
  });

  test("--no-wait skips the run (exit 75) while another copy holds the lease, like flock -n", { timeout: TIMEOUT_MS * 3 }, async (t) => {
    const cmd = find(/leader-run --no-wait -- /);
    assert.ok(!/['"\\$`]/.test(cmd.text), `${cmd.file}:${cmd.line}: this check splits the command on spaces; it has quoting`);
    // The lease the documented command would take: its name as leader-run derives it.
    const argv = cmd.text.split(/\s+/).slice(1);
    const parsed = await parseCommandLine(argv, { env: {}, cwd: "/" });
    assert.equal(parsed.command, "run");
    if (parsed.command !== "run") return;

    const sandbox = makeSandbox();
    t.after(sandbox.cleanup);
    const sub = substitute(cmd.text, sandbox.dir, backends);
    const env = { ...baseEnv(sandbox.path, sandbox.dir), ...sub.env };
    const holder = spawn("leader-run", ["--name", parsed.options.name, "--", "sleep", "60"], { cwd: sandbox.cwd, env, detached: true, stdio: "ignore" });
    const holderExit = new Promise<void>((resolve) => holder.on("close", () => resolve()));
    t.after(async () => {
      try {
        process.kill(-holder.pid!, "SIGTERM");
      } catch {
        // gone
      }
      await holderExit;
    });
    // Wait until the holder leads: `leader-run status` exits 0 once a live holder exists.
    const deadline = performance.now() + TIMEOUT_MS;
    for (;;) {
      const s = await runShell(`leader-run status --name ${parsed.options.name}`, { cwd: sandbox.cwd, env, timeoutMs: TIMEOUT_MS });
      if (s.code === 0) break;
      assert.ok(performance.now() < deadline, `the holder never took the lease: ${s.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const r = await runShell(sub.text, { cwd: sandbox.cwd, env, timeoutMs: TIMEOUT_MS });
    assert.equal(r.code, 75, `${cmd.file}:${cmd.line}: ${cmd.text}\n  exit ${r.code}\n  stderr: ${r.stderr}`);
    assert.equal(r.stdout, "", "the command must not have run");
  });
});
