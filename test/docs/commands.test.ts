/**
 * Every shell command in the documentation runs, exactly as written, and does what the docs say.
 * The tests are generated from the Markdown at load time, so a new ```sh block is picked up on its
 * own; support/shell.ts has the rules (which blocks, the sandbox, and what is substituted: only where
 * the lease lives). A block that cannot run here carries `<!-- not run: why -->` and shows up as
 * skipped with that reason; `<!-- run: exit N -->` declares the exit code its commands end with.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import { parseCommandLine } from "../../src/cli/options.js";
import { startLeaseApiServer, type LeaseApiServer } from "../support/lease-api-server.js";
import { hasRedis, requireRedis, RedisServer } from "../support/redis-server.js";
import { documentationFiles, readCodeBlocks, ROOT, type CodeBlock } from "./support/markdown.js";
import { commandsOf, makeSandbox, notRunReason, runShell, SHELL_LANGS, substitute, type Backends, type DocCommand } from "./support/shell.js";

/** What the README's Redis example embeds in its URL; the test server is started with it. */
const DOC_REDIS_PASSWORD = "secret";
const TIMEOUT_MS = 30_000;

const blocks: CodeBlock[] = documentationFiles().flatMap((f) => readCodeBlocks(f).filter((b) => SHELL_LANGS.has(b.lang)));

let redis: RedisServer | undefined;
let kube: LeaseApiServer | undefined;
const backends: Backends = {};
const cleanups: Array<() => void> = [];

before(async () => {
  assert.ok(existsSync(join(ROOT, "dist", "bin", "main.js")), "dist/bin/main.js is missing: run `npm run build` first (npm test builds before testing)");
  if (hasRedis()) {
    redis = await RedisServer.start({ password: DOC_REDIS_PASSWORD });
    backends.redis = { port: redis.port, password: DOC_REDIS_PASSWORD };
  }
  kube = await startLeaseApiServer();
  const sandbox = makeSandbox();
  cleanups.push(sandbox.cleanup);
  backends.kubeconfig = kube.writeKubeconfig(join(sandbox.dir, "kubeconfig.json"));
});
after(async () => {
  await redis?.stop();
  await kube?.close();
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
  const sub = substitute(cmd.text, sandbox.dir, backends);
  if (sub.needs.includes("redis") && !requireRedis(t)) return undefined;
  const r = await runShell(sub.text, { cwd: sandbox.cwd, env: { ...baseEnv(sandbox.path, sandbox.dir), ...sub.env }, timeoutMs: TIMEOUT_MS });
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
    for (const expected of [/\.\/bin\/leader-run\.js -- node -e/, /--no-wait -- \.\/backup\.sh/, /--wait 5m/, /redis:\/\//, /--lock (k8s|kubernetes):/]) {
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
      test(`${cmd.file}:${cmd.line}: ${cmd.text}`, { timeout: TIMEOUT_MS * 2 }, async (t) => {
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
