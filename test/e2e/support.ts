import assert from "node:assert/strict";
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, beforeEach } from "node:test";
import { fileURLToPath } from "node:url";
import { FileMutex } from "../../src/locks/file/mutex.js";
import { isRunning } from "../child/fixtures/util.js";

/**
 * End-to-end harness: spawns the real `bin/leader-run.js` (compiled dist/) with a fresh lock directory
 * per test, tracks every process it starts, and after each test proves nothing is left behind.
 *
 * Every long-running process a test starts carries a marker unique to this test process in its
 * arguments (`sleep 1000.<pid, 7 digits><seq, 3 digits>`), so `pgrep -f` finds exactly our leftovers.
 */

export { isRunning };

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
export const BIN = join(ROOT, "bin", "leader-run.js");
export const CHILD = join(ROOT, "test", "e2e", "fixtures", "child.sh");

/** Short timings (renewDeadline + killGrace < leaseDuration) so losses and expiries take seconds. */
export const LEASE_MS = 3000;
export const RENEW_DEADLINE_MS = 2000;
export const RETRY_MS = 300;
export const GRACE_MS = 500;
export const TIMING = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "300ms", "--kill-grace", "500ms"];

/** Fails with a clear message instead of a pile of confusing test failures. */
export function assertBuilt(): void {
  if (!existsSync(join(ROOT, "dist", "bin", "main.js"))) {
    throw new Error(`dist/bin/main.js is missing: run \`npm run build\` before the e2e tests (npm test builds first)`);
  }
}

const PREFIX = `1000.${String(process.pid).padStart(7, "0")}`;
const PREFIX_PATTERN = PREFIX.replace(".", "\\.");
let seq = 0;

/** A fresh `sleep` argument that marks a process as this test process's. */
export function marker(): string {
  seq += 1;
  return `${PREFIX}${String(seq).padStart(3, "0")}`;
}

function pgrep(pattern: string): number[] {
  try {
    return execFileSync("pgrep", ["-f", pattern], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map(Number)
      .filter(isRunning);
  } catch {
    return []; // exit 1: nothing matched
  }
}

/** Live `sleep <marker>` processes. */
export function sleepers(m: string): number[] {
  return pgrep(`^sleep ${m.replace(".", "\\.")}$`);
}

/** Every marked process of this test process still running (leftovers, when no test is running). */
export function leftovers(): string[] {
  return pgrep(PREFIX_PATTERN).map(describePid);
}

/**
 * Samples, every `everyMs`, which markers have a live `sleep <marker>`; `stop()` returns every sample
 * in which more than one marker was alive at once (an overlap of two children), and which markers were
 * ever seen alive (proof that the sampler saw the children at all). `seen` is also readable while the
 * sampler runs: a sample takes a pgrep spawn plus `everyMs`, far longer on a loaded machine, so a test
 * that must not end a child before it was sampled waits for its marker there instead of sleeping.
 */
export function overlapSampler(
  markers: readonly string[],
  everyMs = 40,
): { readonly seen: ReadonlySet<string>; stop(): Promise<{ overlaps: string[][]; seen: Set<string> }> } {
  let running = true;
  const overlaps: string[][] = [];
  const seen = new Set<string>();
  const loop = (async () => {
    while (running) {
      const alive = await new Promise<string[]>((resolve) => {
        execFile("pgrep", ["-a", "-f", `^sleep ${PREFIX_PATTERN}`], { encoding: "utf8" }, (_err, out) => {
          const args = String(out ?? "")
            .split("\n")
            .map((l) => l.trim().split(/\s+/)[2] ?? "");
          resolve(markers.filter((m) => args.includes(m)));
        });
      });
      for (const m of alive) seen.add(m);
      if (alive.length > 1) overlaps.push(alive);
      await delay(everyMs);
    }
  })();
  return {
    seen,
    async stop() {
      running = false;
      await loop;
      return { overlaps, seen };
    },
  };
}


function describePid(pid: number): string {
  try {
    return `${pid} (${readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim()})`;
  } catch {
    return String(pid);
  }
}

export const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 20 ms; returns the ms it took, fails after `timeoutMs`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<number> {
  const start = performance.now();
  while (!(await cond())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
  return performance.now() - start;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One JSON log line of leader-run (`--log-format json`). */
export type LogLine = Record<string, unknown> & { event?: string; level?: string };

/** A spawned leader-run (any subcommand) with its output collected. */
export class LeaderRunProcess {
  stdout = "";
  stderr = "";
  exitInfo: Exit | undefined;
  readonly exited: Promise<Exit>;
  readonly spawnedAt = performance.now();

  constructor(
    readonly label: string,
    readonly process: ChildProcess,
  ) {
    process.stdout?.setEncoding("utf8").on("data", (s: string) => (this.stdout += s));
    process.stderr?.setEncoding("utf8").on("data", (s: string) => (this.stderr += s));
    this.exited = new Promise((resolve) => {
      process.once("close", (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    const pid = this.process.pid;
    if (pid === undefined) throw new Error(`${this.label}: not started`);
    return pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined && this.process.exitCode === null && this.process.signalCode === null;
  }

  signal(sig: NodeJS.Signals): void {
    this.process.kill(sig);
  }

  /** JSON log lines on stderr (other lines, e.g. the watchdog's, are skipped). */
  logs(): LogLine[] {
    const out: LogLine[] = [];
    for (const line of this.stderr.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as LogLine);
      } catch {
        // a line still being written
      }
    }
    return out;
  }

  events(): string[] {
    return this.logs().map((l) => l.event ?? "");
  }

  async waitForLog(event: string | ((line: LogLine) => boolean), timeoutMs = 15_000): Promise<LogLine> {
    const what = typeof event === "string" ? `"${event}"` : "the expected line";
    const match = typeof event === "string" ? (l: LogLine) => l.event === event : event;
    let found: LogLine | undefined;
    try {
      await waitFor(`${this.label} to log ${what}`, () => {
        found = this.logs().find(match);
        if (found) return true;
        // Not `running`: that turns false at 'exit', while the last stderr chunk may still be on its way.
        // exitInfo is set on 'close', after all output arrived, so one more look settles it.
        if (this.exitInfo === undefined) return false;
        found = this.logs().find(match);
        if (!found) throw new Error(`${this.label} exited (${JSON.stringify(this.exitInfo)}) before logging ${what}`);
        return true;
      }, timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}; stderr:\n${this.stderr}`);
    }
    return found as LogLine;
  }

  /** Waits until this process has seen another holder of the lease (it campaigns as a standby). */
  async waitForStandby(timeoutMs = 15_000): Promise<void> {
    await this.waitForLog((l) => l.event === "waiting" || (l.event === "new_leader" && l.leader !== "(none)" && l.leader !== this.label), timeoutMs);
  }

  /** Waits for the exit; on timeout the error shows what the process logged. */
  async exit(timeoutMs = 15_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.label} did not exit within ${timeoutMs} ms; stderr:\n${this.stderr}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Exit code with stderr in the failure message. */
  async exitCode(timeoutMs = 15_000): Promise<number | null> {
    return (await this.exit(timeoutMs)).code;
  }

  toString(): string {
    return `${this.label} (pid ${this.process.pid ?? "?"}, exit ${JSON.stringify(this.exitInfo)})\nstderr:\n${this.stderr}`;
  }
}

/** A line the fixture child wrote. */
export interface ChildEvent {
  kind: "start" | "stop";
  tag: string;
  pid: number;
  /** Wall time in ms with sub-ms precision (from `date +%s%N`). */
  ms: number;
  fields: Record<string, string>;
}

export function parseChildEvents(text: string): ChildEvent[] {
  const out: ChildEvent[] = [];
  for (const line of text.split("\n")) {
    const [kind, ...rest] = line.trim().split(" ");
    if (kind !== "start" && kind !== "stop") continue;
    const fields: Record<string, string> = {};
    for (const kv of rest) {
      const i = kv.indexOf("=");
      if (i > 0) fields[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const ns = fields.ns ?? "";
    out.push({
      kind,
      tag: fields.tag ?? "",
      pid: Number(fields.pid),
      // ns since the epoch exceeds 2^53: split before converting.
      ms: Number(ns.slice(0, -6)) + Number(ns.slice(-6)) / 1e6,
      fields,
    });
  }
  return out;
}

/** The events the fixture child wrote to `file`; none before it was created. */
export async function readChildEvents(file: string): Promise<ChildEvent[]> {
  try {
    return parseChildEvents(await readFile(file, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw err;
  }
}

export async function waitForChildEvent(file: string, what: string, pred: (e: ChildEvent) => boolean, timeoutMs: number): Promise<ChildEvent> {
  let found: ChildEvent | undefined;
  await waitFor(what, async () => {
    found = (await readChildEvents(file)).find(pred);
    return found !== undefined;
  }, timeoutMs);
  return found as ChildEvent;
}

/** Per-test world: a private lock directory, an events file, and every process started. */
export class E2E {
  readonly name: string;
  readonly lockDir: string;
  readonly eventsFile: string;
  private readonly procs: LeaderRunProcess[] = [];
  private static count = 0;

  private constructor(
    readonly work: string,
    private readonly lockFlags: readonly string[] | undefined,
  ) {
    E2E.count += 1;
    this.name = `e2e-${process.pid}-${E2E.count}`;
    this.lockDir = join(work, "lock");
    this.eventsFile = join(work, "events.log");
  }

  /** `lockFlags`: the flags naming another backend's lock (default: `--lock file:<this test's dir>`). */
  static async create(lockFlags?: (work: string) => readonly string[]): Promise<E2E> {
    assertBuilt();
    const work = await mkdtemp(join(tmpdir(), "leader-run-e2e-"));
    const h = new E2E(work, lockFlags?.(work));
    await mkdir(h.lockDir, { mode: 0o700 });
    return h;
  }

  get lockUrl(): string {
    return `file:${this.lockDir}`;
  }

  /** The flags that name this test's lock (`--lock …` and what that backend needs besides). */
  get lockArgs(): string[] {
    return [...(this.lockFlags ?? ["--lock", this.lockUrl])];
  }

  get leasePath(): string {
    return join(this.lockDir, this.name);
  }

  /** `bin/leader-run.js <args>`, tracked for cleanup. */
  spawn(label: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): LeaderRunProcess {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    // A leader-run started from a test that itself runs under leader-run must not inherit the outer lease.
    for (const key of Object.keys(childEnv)) if (key.startsWith("LEADER_RUN_") && !(key in env)) delete childEnv[key];
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: childEnv, cwd: this.work });
    const p = new LeaderRunProcess(label, child);
    this.procs.push(p);
    return p;
  }

  /** The fixture child as a command line: `sh child.sh <events> <tag> <marker> [mode]`. */
  child(tag: string, sleepMarker: string, mode?: "ignore-term"): string[] {
    return ["sh", CHILD, this.eventsFile, tag, sleepMarker, ...(mode ? [mode] : [])];
  }

  /** A leader-run of this test's lease with `timing` (default: the short one), JSON logs and `--identity <identity>`. */
  run(identity: string, command: readonly string[], extra: readonly string[] = [], timing: readonly string[] = TIMING): LeaderRunProcess {
    return this.spawn(identity, [...this.lockArgs, "--name", this.name, "--identity", identity, "--log-format", "json", ...timing, ...extra, "--", ...command]);
  }

  /** `leader-run status|release …` on this test's lease. */
  async oneShot(command: "status" | "release" | "step-down", extra: readonly string[] = [], timeoutMs = 20_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const p = this.spawn(command, [command, ...this.lockArgs, "--name", this.name, ...extra]);
    const { code } = await p.exit(timeoutMs);
    return { code, stdout: p.stdout, stderr: p.stderr };
  }

  childEvents(): Promise<ChildEvent[]> {
    return readChildEvents(this.eventsFile);
  }

  waitForChildEvent(what: string, pred: (e: ChildEvent) => boolean, timeoutMs = 15_000): Promise<ChildEvent> {
    return waitForChildEvent(this.eventsFile, what, pred, timeoutMs);
  }

  async leaseFile(): Promise<Record<string, unknown>> {
    return JSON.parse(await readFile(this.leasePath, "utf8")) as Record<string, unknown>;
  }

  /**
   * Replaces the lease file as another writer would: atomically (rename) and inside the lock's critical
   * section, so a renewal in flight cannot overwrite it (a bare rename would race with its CAS).
   */
  async replaceLeaseFile(content: string): Promise<void> {
    const mutex = await new FileMutex(join(this.lockDir, `.${this.name}~lock`)).acquire();
    try {
      const tmp = join(this.work, `replace-${Date.now()}`);
      await writeFile(tmp, content, { mode: 0o644 });
      await rename(tmp, this.leasePath);
    } finally {
      await mutex.release();
    }
  }

  /** See `cleanupRuns`. */
  cleanup(): Promise<string[]> {
    return cleanupRuns(this.procs, this.work);
  }
}

/**
 * Kills whatever a test left running (leader-runs first, then anything marked), removes `work`, and
 * returns what had to be killed so `afterEach` can fail the test that leaked it.
 */
export async function cleanupRuns(procs: readonly LeaderRunProcess[], work: string): Promise<string[]> {
  const leaks: string[] = [];
  for (const p of procs) {
    if (!p.running) continue;
    leaks.push(`leader-run "${p.label}" (pid ${p.pid}) still running`);
    p.signal("SIGKILL");
    await p.exit(10_000).catch(() => undefined);
  }
  // A killed leader-run's watchdog stops the child's group within its grace: give it that time.
  const deadline = performance.now() + (leaks.length > 0 ? 3000 : 0);
  let left = pgrep(PREFIX_PATTERN);
  while (left.length > 0 && performance.now() < deadline) {
    await delay(50);
    left = pgrep(PREFIX_PATTERN);
  }
  for (const pid of left) {
    leaks.push(`leftover process ${describePid(pid)}`);
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  await rm(work, { recursive: true, force: true });
  return leaks;
}

/** GET on a fresh connection; resolves with the status code (0 when the connection fails). */
export function httpStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest(url, { agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
      res.on("error", () => resolve(0));
    });
    req.setTimeout(5000, () => req.destroy(new Error("timeout")));
    req.on("error", () => resolve(0));
    req.end();
  });
}

/**
 * The hooks every e2e file needs: a fresh harness per test (handed to `set`), a check after each test
 * that it left no process behind, and one after the file for anything started outside a harness.
 */
export function useE2E(set: (h: E2E) => void): void {
  let current: E2E | undefined;
  beforeEach(async () => {
    current = await E2E.create();
    set(current);
  });
  afterEach(async () => {
    assert.deepEqual(await current?.cleanup(), [], "the test left processes behind");
  });
  after(() => {
    assert.deepEqual(leftovers(), [], "processes left behind");
  });
}
