import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { FileMutex } from "../../src/locks/file/mutex.js";
import { currentProcess } from "../../src/locks/file/process.js";
import { Processes, tempDir, waitFor } from "./file-helpers.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const workerScript = join(here, "file-elector-worker.ts");

interface Timings {
  leaseDuration: number;
  renewDeadline: number;
  retryPeriod: number;
  holdMs: number;
  cooldownMs?: number;
}

interface LogLine {
  kind: "start" | "stop";
  mono: bigint;
  pid: number;
  identity: string;
  term: number;
}

const procs = new Processes();
let root: { dir: string; cleanup: () => Promise<void> };
let n = 0;

before(async () => {
  root = await tempDir("leader-run-filemp-");
});

after(async () => {
  await procs.killAll();
  await root.cleanup();
});

/** One lease shared by a group of worker processes, with its log. */
class Campaign {
  readonly dir: string;
  readonly log: string;
  readonly workers: ChildProcess[] = [];
  private readonly stderr = new Map<number, string>();

  constructor(private readonly timings: Timings) {
    const id = ++n;
    this.dir = join(root.dir, `lease${id}`);
    this.log = join(root.dir, `log${id}.txt`);
  }

  get leaseFile(): string {
    return join(this.dir, "job");
  }

  start(count: number): void {
    for (let i = 0; i < count; i++) {
      const config = { ...this.timings, dir: this.dir, name: "job", identity: `w${i}`, log: this.log };
      const child = spawn(process.execPath, ["--import", "tsx", workerScript, JSON.stringify(config)], {
        cwd: repo,
        stdio: ["ignore", "ignore", "pipe"],
      });
      procs.track(child);
      let err = "";
      child.stderr?.on("data", (chunk: Buffer) => {
        err += chunk.toString();
        if (child.pid !== undefined) this.stderr.set(child.pid, err);
      });
      this.workers.push(child);
    }
  }

  async rawLines(): Promise<string[]> {
    try {
      return (await readFile(this.log, "utf8")).split("\n").filter((l) => l !== "");
    } catch {
      return [];
    }
  }

  async intervals(): Promise<LogLine[]> {
    const out: LogLine[] = [];
    for (const line of await this.rawLines()) {
      const [kind, mono, , pid, identity, term] = line.split(" ");
      if (kind !== "start" && kind !== "stop") continue;
      out.push({ kind, mono: BigInt(mono!), pid: Number(pid), identity: identity!, term: Number(term) });
    }
    return out.sort((a, b) => (a.mono < b.mono ? -1 : a.mono > b.mono ? 1 : 0));
  }

  async starts(): Promise<LogLine[]> {
    return (await this.intervals()).filter((l) => l.kind === "start");
  }

  /** Waits for the `count`-th start line and returns it. */
  async nthStart(count: number, timeoutMs: number): Promise<LogLine> {
    let found: LogLine | undefined;
    try {
      await waitFor(
        async () => {
          found = (await this.starts())[count - 1];
          return found !== undefined;
        },
        timeoutMs,
        `start #${count} in ${this.log}`,
      );
    } catch (err) {
      const tail = (await this.rawLines()).slice(-15).join("\n");
      throw new Error(`${(err as Error).message}\nlast log lines:\n${tail}\n${this.diagnostics()}`);
    }
    return found!;
  }

  worker(pid: number): ChildProcess {
    const w = this.workers.find((c) => c.pid === pid);
    assert.ok(w, `no worker with pid ${pid}`);
    return w;
  }

  /** SIGTERM every worker (clean stop: work ends, lease released) and wait; SIGKILL stragglers. */
  async stop(): Promise<void> {
    await Promise.all(
      this.workers.map(async (w) => {
        if (w.exitCode !== null || w.signalCode !== null) return;
        const exited = new Promise<void>((r) => w.once("exit", () => r()));
        w.kill("SIGTERM");
        const timer = setTimeout(() => w.kill("SIGKILL"), 15_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  diagnostics(): string {
    return [...this.stderr.entries()].map(([pid, s]) => `worker ${pid} stderr:\n${s}`).join("\n");
  }

  /** Leadership intervals, ordered on the host's monotonic clock, never overlap; terms increase. */
  async assertNoOverlap(extra: LogLine[] = []): Promise<LogLine[]> {
    const lines = [...(await this.intervals()), ...extra].sort((a, b) => (a.mono < b.mono ? -1 : a.mono > b.mono ? 1 : 0));
    let open: LogLine | undefined;
    let lastTerm = -1;
    for (const line of lines) {
      if (line.kind === "start") {
        assert.equal(open, undefined, `pid ${line.pid} started leading while pid ${open?.pid} still led:\n${(await this.rawLines()).join("\n")}`);
        assert.ok(line.term > lastTerm, `term ${line.term} after ${lastTerm}`);
        lastTerm = line.term;
        open = line;
      } else if (open !== undefined && open.pid === line.pid && open.term === line.term) {
        open = undefined;
      } else {
        assert.fail(`unmatched stop of pid ${line.pid} term ${line.term}`);
      }
    }
    return lines;
  }
}

const ms = (ns: bigint): number => Number(ns / 1_000_000n);

describe("file lock with real processes campaigning through LeaderElector", { timeout: 120_000 }, () => {
  test("leadership intervals of 4 processes never overlap while the lease changes hands many times", async (t) => {
    const c = new Campaign({ leaseDuration: 3000, renewDeadline: 2000, retryPeriod: 300, holdMs: 150, cooldownMs: 100 });
    try {
      c.start(4);
      await c.nthStart(16, 40_000);
    } finally {
      await c.stop();
    }
    const lines = await c.assertNoOverlap();
    const leaders = new Set(lines.map((l) => l.pid));
    t.diagnostic(`${lines.length / 2} terms led by ${leaders.size} processes`);
    assert.ok(leaders.size >= 2, `only ${leaders.size} process(es) ever led`);
    assert.equal(lines.filter((l) => l.kind === "start").length, lines.filter((l) => l.kind === "stop").length);
  });

  test("a SIGKILLed leader is replaced within about one retry period, long before its lease expires", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable: no dead-holder detection");
    const timings = { leaseDuration: 10_000, renewDeadline: 6000, retryPeriod: 400, holdMs: 0 };
    const c = new Campaign(timings);
    let takeoverMs: number;
    let first: LogLine;
    let killedAt: bigint;
    try {
      c.start(3);
      first = await c.nthStart(1, 30_000);
      await waitFor(async () => (await c.rawLines()).some((l) => l.startsWith("waiting ")), 30_000, "a follower campaigning");
      await procs.kill(c.worker(first.pid));
      killedAt = process.hrtime.bigint();
      const second = await c.nthStart(2, 30_000);
      assert.notEqual(second.pid, first.pid);
      takeoverMs = ms(second.mono - killedAt);
    } finally {
      await c.stop();
    }
    t.diagnostic(`takeover ${takeoverMs}ms after the kill`);
    // Normal expiry would take the whole 10 s lease; a retry period is 400-880 ms (+ a loaded machine).
    assert.ok(takeoverMs < 4000, `takeover took ${takeoverMs}ms`);
    // The killed leader never logs its stop: its interval ends when it was killed.
    await c.assertNoOverlap([{ ...first, kind: "stop", mono: killedAt }]);
  });

  test("a lease released on SIGTERM is taken over at once through watch, without waiting a retry period", async (t) => {
    const timings = { leaseDuration: 12_000, renewDeadline: 8000, retryPeriod: 5000, holdMs: 0 };
    const c = new Campaign(timings);
    let takeoverMs: number;
    try {
      c.start(2);
      const first = await c.nthStart(1, 30_000);
      await waitFor(async () => (await c.rawLines()).some((l) => l.startsWith("waiting ")), 30_000, "the follower campaigning");
      const leader = c.worker(first.pid);
      const exited = new Promise<void>((r) => leader.once("exit", () => r()));
      const stoppedAt = process.hrtime.bigint();
      leader.kill("SIGTERM");
      await exited;
      const second = await c.nthStart(2, 30_000);
      takeoverMs = ms(second.mono - stoppedAt);
    } finally {
      await c.stop();
    }
    await c.assertNoOverlap();
    t.diagnostic(`takeover ${takeoverMs}ms after SIGTERM`);
    // The follower's own retry timer is 5-11 s away; only the watch notification explains a start within
    // a retry period. The takeover spans the leader's exit, its release (fsync), the notification and a
    // node process's acquire: a bound just below the retry period leaves the rest for a loaded machine.
    const bound = timings.retryPeriod - 500;
    assert.ok(takeoverMs < bound, `takeover took ${takeoverMs}ms (bound: ${bound}ms)`);
  });

  test("a corrupt lease file stops the leader, is reported clearly, and nobody takes over before the lease could have expired", async (t) => {
    const timings = { leaseDuration: 3000, renewDeadline: 2000, retryPeriod: 300, holdMs: 0 };
    const c = new Campaign(timings);
    let corruptedAt: bigint;
    let first: LogLine;
    try {
      c.start(3);
      first = await c.nthStart(1, 30_000);
      await waitFor(async () => (await c.rawLines()).some((l) => l.startsWith("waiting ")), 30_000, "followers campaigning");
      const good = await readFile(c.leaseFile, "utf8");
      const truncated = good.slice(0, good.indexOf('"leaderRun"') + 8);
      await writeFile(`${c.leaseFile}.scratch`, truncated, { mode: 0o644 });
      // Inside the lock's critical section, or a renewal in flight could overwrite the damage at once.
      const mutex = await new FileMutex(join(c.dir, ".job~lock")).acquire();
      corruptedAt = process.hrtime.bigint();
      await rename(`${c.leaseFile}.scratch`, c.leaseFile);
      await mutex.release();
      await c.nthStart(2, 30_000);
    } finally {
      await c.stop();
    }
    const lines = await c.assertNoOverlap();
    const stop = lines.find((l) => l.kind === "stop" && l.pid === first.pid && l.term === first.term)!;
    const second = lines.filter((l) => l.kind === "start")[1]!;
    // It stops at its renew deadline (2 s); the bound leaves room for a loaded machine.
    assert.ok(ms(stop.mono - corruptedAt) < 2 * timings.leaseDuration, "the leader stops once it cannot renew");
    const waited = ms(second.mono - corruptedAt);
    t.diagnostic(`leader stopped ${ms(stop.mono - corruptedAt)}ms and successor started ${waited}ms after the corruption`);
    assert.ok(waited >= timings.leaseDuration - 50, `taken over after ${waited}ms, before the lease could have expired`);
    assert.ok(second.term > first.term, `term ${second.term} after ${first.term}: fencing tokens keep increasing`);
    const errors = (await c.rawLines()).filter((l) => l.startsWith("error "));
    assert.ok(
      errors.some((l) => l.includes(c.leaseFile) && /is corrupt: it is not valid JSON.*left/.test(l)),
      `no clear corrupt-file error among:\n${errors.join("\n")}`,
    );
    JSON.parse(await readFile(c.leaseFile, "utf8")); // the new leader wrote a valid file
  });
});
