import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { FileLock } from "../../src/locks/file/index.js";
import { Processes, record, tempDir, waitFor } from "./file-helpers.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const casScript = join(here, "file-cas-worker.ts");

const procs = new Processes();
let root: { dir: string; cleanup: () => Promise<void> };
let n = 0;

before(async () => {
  root = await tempDir("leader-run-filecas-");
});

after(async () => {
  await procs.killAll();
  await root.cleanup();
});

describe("file lock compare-and-swap across processes", { timeout: 120_000 }, () => {
  function casWriter(dir: string, identity: string, iterations: number): { child: ChildProcess; done: Promise<{ code: number | null; out: string; err: string }> } {
    const config = { dir, name: "job", identity, iterations };
    const child = procs.track(spawn(process.execPath, ["--import", "tsx", casScript, JSON.stringify(config)], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] }));
    let out = "";
    let err = "";
    child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr?.on("data", (c: Buffer) => (err += c.toString()));
    const done = new Promise<{ code: number | null; out: string; err: string }>((r) => child.once("close", (code) => r({ code, out, err })));
    return { child, done };
  }

  test("concurrent writers in 4 processes never lose an update: the counter equals the number of successful CAS writes", async () => {
    const dir = join(root.dir, `cas${++n}`);
    await new FileLock({ name: "job", identity: "seed", dir }).create(record("seed", 0));
    const writers = Array.from({ length: 4 }, (_, i) => casWriter(dir, `w${i}`, 80));
    const results = await Promise.all(writers.map((w) => w.done));
    for (const r of results) assert.equal(r.code, 0, r.err);
    const wins = results.map((r) => Number(r.out.trim()));
    const { record: final } = await new FileLock({ name: "job", identity: "check", dir }).get();
    assert.equal(final.leaderTransitions, wins.reduce((a, b) => a + b, 0), `wins per writer: ${wins.join(", ")}`);
    assert.ok(wins.filter((w) => w > 0).length >= 2, `wins per writer: ${wins.join(", ")}`);
  });

  test("writers SIGKILLed at random moments never leave a torn lease file or a critical section that blocks", async () => {
    const dir = join(root.dir, `cas${++n}`);
    await mkdir(dir, { mode: 0o700 });
    const reader = new FileLock({ name: "job", identity: "reader", dir });
    await new FileLock({ name: "job", identity: "seed", dir }).create(record("seed", 0));
    for (let round = 0; round < 2; round++) {
      const writers = Array.from({ length: 4 }, (_, i) => casWriter(dir, `w${round}-${i}`, 0));
      // Let them get going (tsx start-up), then kill them all mid-flight, one after another.
      await waitFor(async () => (await reader.get()).record.holderIdentity.startsWith(`w${round}-`), 20_000, "writers running");
      for (const w of writers) {
        await new Promise((r) => setTimeout(r, Math.random() * 30));
        await procs.kill(w.child);
        const { record: now } = await reader.get(); // parses: never torn
        assert.ok(now.leaderTransitions > 0);
      }
    }
    // Whatever they left behind (a lock file, temp files) neither blocks nor survives the next write.
    await reader.get();
    const started = Date.now();
    await reader.update(record("reader", 1));
    assert.ok(Date.now() - started < 8_000, `next write took ${Date.now() - started}ms`);
    assert.deepEqual(await readdir(dir), ["job"]);
  });
});
