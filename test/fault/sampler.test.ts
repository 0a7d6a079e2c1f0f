/**
 * The instrument first: the sampler must see what the campaigns claim never happens. Two witness
 * groups alive at once (one of them SIGSTOPped) are an overlap, a smaller token after a larger one is a
 * regression, and a witness still alive at the end is a leftover; processes without the campaign's
 * marker are ignored.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { SamplerResult } from "./sampler.js";

const SAMPLER = fileURLToPath(new URL("./sampler.ts", import.meta.url));
const started: ChildProcess[] = [];
const dirs: string[] = [];
after(() => {
  for (const p of started) if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) {
    try {
      process.kill(p.pid, "SIGCONT");
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let count = 0;
function ids(): { campaign: string; marker: string; out: string } {
  count += 1;
  const campaign = `${process.pid}${String(count).padStart(3, "0")}`;
  const dir = mkdtempSync(join(tmpdir(), "leader-run-sampler-"));
  dirs.push(dir);
  return { campaign, marker: `900000.${campaign}`, out: join(dir, "result.json") };
}

interface SamplerHandle {
  /** Resolves once the sampler has seen a witness group led by `pid`. */
  seen(pid: number | undefined): Promise<void>;
  finish(settleMs: number): Promise<SamplerResult>;
}

async function startSampler(campaign: string, marker: string, out: string): Promise<SamplerHandle> {
  const p = spawn(process.execPath, ["--import", "tsx", SAMPLER, campaign, marker, "5", out], { stdio: ["pipe", "pipe", "inherit"] });
  started.push(p);
  const closed = new Promise<void>((r) => p.once("close", () => r()));
  const lines = createInterface({ input: p.stdout as NodeJS.ReadableStream });
  const seen = new Set<number>();
  const waiters: Array<() => void> = [];
  lines.on("line", (line) => {
    const m = /^seen (\d+) /.exec(line);
    if (m !== null) seen.add(Number(m[1]));
    for (const w of waiters.splice(0)) w();
  });
  const next = (): Promise<void> => new Promise((r) => waiters.push(r));
  await Promise.race([next(), closed.then(() => Promise.reject(new Error("the sampler exited before it was ready")))]);
  return {
    async seen(pid) {
      while (pid === undefined || !seen.has(pid)) await next();
    },
    async finish(settleMs) {
      p.stdin?.end(`finish ${settleMs}\n`);
      await closed;
      return JSON.parse(readFileSync(out, "utf8")) as SamplerResult;
    },
  };
}

function witness(campaign: string | undefined, marker: string, token: string): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, LEADER_RUN_FENCING_TOKEN: token };
  if (campaign !== undefined) env.FAULT_CAMPAIGN = campaign;
  // Its own group, as leader-run starts the command.
  const p = spawn("sleep", [marker], { detached: true, stdio: "ignore", env });
  started.push(p);
  return p;
}

async function gone(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  await new Promise((r) => p.once("exit", r));
}

test("two witness groups at once, one of them stopped, are an overlap; a smaller token is a regression", { timeout: 30_000 }, async () => {
  const { campaign, marker, out } = ids();
  const sampler = await startSampler(campaign, marker, out);
  // Another campaign's witness with the same cmdline is not ours.
  const stranger = witness(undefined, marker, "1");
  const a = witness(campaign, marker, "5");
  await sampler.seen(a.pid);
  a.kill("SIGSTOP");
  const b = witness(campaign, marker, "3");
  // The sample that first saw b saw the stopped a too.
  await sampler.seen(b.pid);
  for (const p of [a, b, stranger]) {
    p.kill("SIGCONT");
    p.kill("SIGKILL");
  }
  await Promise.all([a, b, stranger].map(gone));
  const result = await sampler.finish(2000);
  assert.equal(result.overlaps.length, 1, JSON.stringify(result.overlaps));
  const overlap = result.overlaps[0];
  assert.deepEqual(overlap?.groups.map((g) => g.token).sort(), [3, 5]);
  assert.ok((overlap?.samples ?? 0) >= 1);
  assert.deepEqual(result.tokenRegressions.map((t) => [t.token, t.previousMax]), [[3, 5]]);
  assert.equal(result.groups.length, 2);
  assert.deepEqual(result.leftovers, []);
});

test("one witness after another is no overlap; a witness alive at the end is a leftover", { timeout: 30_000 }, async () => {
  const { campaign, marker, out } = ids();
  const sampler = await startSampler(campaign, marker, out);
  const a = witness(campaign, marker, "1");
  await sampler.seen(a.pid);
  a.kill("SIGKILL");
  await gone(a);
  const b = witness(campaign, marker, "2");
  await sampler.seen(b.pid);
  const result = await sampler.finish(300);
  b.kill("SIGKILL");
  assert.deepEqual(result.overlaps, []);
  assert.deepEqual(result.tokenRegressions, []);
  assert.deepEqual(result.groups.map((g) => g.token), [1, 2]);
  assert.deepEqual(result.leftovers.map((l) => [l.pid, l.kind]), [[b.pid, "witness"]]);
});
