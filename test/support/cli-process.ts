/**
 * The real `leader-run` command as a separate process, with its JSON log parsed as it arrives, for the
 * backends' CLI tests (Redis, etcd, …). Runs
 * bin/leader-run.js when dist/ is newer than every source file (after `npm run build`), otherwise the
 * CLI from source through tsx.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

function newestMtime(dir: string, suffix: string, pick: (a: number, b: number) => number, start: number): number {
  let result = start;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) result = newestMtime(path, suffix, pick, result);
    else if (entry.name.endsWith(suffix)) result = pick(result, statSync(path).mtimeMs);
  }
  return result;
}

function cliCommand(): string[] {
  try {
    const newestSource = newestMtime(join(ROOT, "src"), ".ts", Math.max, 0);
    const oldestBuilt = newestMtime(join(ROOT, "dist"), ".js", Math.min, Number.POSITIVE_INFINITY);
    if (oldestBuilt > newestSource) return [join(ROOT, "bin", "leader-run.js")];
  } catch {
    // no dist/
  }
  return ["--import", "tsx", join(ROOT, "test", "cli", "fixtures", "cli.ts")];
}

export const CLI = cliCommand();

export interface LogEntry {
  at: number;
  event: string;
  [field: string]: unknown;
}

const running = new Set<Cli>();

/** For `after()`: stops every CLI still running (SIGTERM, then SIGKILL of it and its children). */
export async function stopAllClis(): Promise<void> {
  await Promise.all([...running].map((c) => c.stop()));
}

/** Whether `promise` settles within `ms`; the timer is cleared, so it never keeps the test process alive. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export class Cli {
  readonly log: LogEntry[] = [];
  readonly stderr: string[] = [];
  stdout = "";
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  private readonly child: ChildProcess;
  /** One per pending waitFor: concurrent waits must not drop each other. */
  private readonly waiters = new Set<() => void>();

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [...CLI, "--log-format", "json", ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, ...env },
    });
    running.add(this);
    this.child.stdout?.on("data", (chunk: Buffer) => (this.stdout += chunk.toString("utf8")));
    let buffer = "";
    this.child.stderr?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("utf8");
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        this.stderr.push(line);
        try {
          const json = JSON.parse(line) as Record<string, unknown>;
          if (typeof json.event === "string") this.log.push({ ...json, event: json.event, at: performance.now() });
        } catch {
          // not a log line
        }
        for (const w of [...this.waiters]) w();
      }
    });
    // Resolve on "close", not "exit": stderr can still hold the last log lines when "exit" fires.
    // `at` stays the moment the process ended, which the timing assertions measure.
    this.exited = new Promise((resolve) => {
      let at = 0;
      this.child.once("exit", () => (at = performance.now()));
      this.child.once("close", (code, signal) => {
        running.delete(this);
        resolve({ code, signal, at: at || performance.now() });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  events(name: string): LogEntry[] {
    return this.log.filter((e) => e.event === name);
  }

  /** Resolves with the `n`-th (1-based) entry of `name`, or undefined after `timeoutMs`. */
  async waitFor(name: string, timeoutMs: number, n = 1): Promise<LogEntry | undefined> {
    const found = (): LogEntry | undefined => this.events(name)[n - 1];
    const deadline = performance.now() + timeoutMs;
    while (found() === undefined && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(0, deadline - performance.now()));
        this.waiters.add(done);
      });
    }
    return found();
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }

  /** Child process groups this leader-run started (from its log). */
  childPids(): number[] {
    return this.events("child_started").map((e) => Number(e.pid));
  }

  /**
   * Teardown: SIGTERM, so leader-run stops its child itself, then SIGKILL if it hangs. A bare SIGKILL
   * can land between the child's start and its registration with the guard (or before `child_started`
   * reaches this log), leaving an orphan that holds our stderr pipe open.
   */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (!running.has(this)) return;
    this.child.kill("SIGTERM");
    if (await settlesWithin(this.exited, timeoutMs)) return;
    this.killAll();
    await settlesWithin(this.exited, 5000);
  }

  killAll(): void {
    for (const pid of this.childPids()) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    this.child.kill("SIGKILL");
  }
}

/** Runs a one-shot command (status, release, --no-wait run) to its end. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = new Cli(args, env);
  if (!(await settlesWithin(cli.exited, timeoutMs))) await cli.stop();
  const { code } = await cli.exited;
  return { code, stdout: cli.stdout, stderr: cli.stderr.join("\n") };
}
