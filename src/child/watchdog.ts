import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ChildEvent } from "./events.js";

/**
 * The guard that kills the child's process group when leader-run dies without warning (SIGKILL, OOM
 * kill), long before the lease can expire. Node has no parent-death signal, so a separate tiny
 * process (`watchdog-process.cjs`) holds a pipe from us on its stdin; the kernel closes the pipe
 * however we die, and on end-of-file it sends each registered group its kill signal, then SIGKILL
 * after that group's grace (the same sequence as a normal stop, so `renewDeadline + killGrace <
 * leaseDuration` also bounds this path), waits at most 5 s more, and exits.
 *
 * One watchdog serves the whole leader-run process (restarted children re-register), started with
 * the first child. It never outlives us: it exits once its pipe closes and its groups are gone. It
 * ignores the usual stop signals, so a Ctrl-C or a SIGTERM to our process group cannot remove it
 * before we have stopped the child; it runs in its own session for the same reason. Its pipe and
 * process are unref'd: it never keeps leader-run alive.
 *
 * Cost: one `node` process, about 7 MB private memory (the rest is the shared node binary) and
 * ~50 ms of CPU to start; no timers run while idle except a 1 s check that forgets vanished groups.
 */

/** Where the watchdog script lives next to this module, in `src/child/` and in `dist/child/`. */
export const WATCHDOG_SCRIPT = fileURLToPath(new URL("./watchdog-process.cjs", import.meta.url));

export interface WatchdogOptions {
  /** Structured events (`watchdog_started`, `watchdog_exited`, `watchdog_failed`). */
  log?: (event: ChildEvent) => void;
  /**
   * How the watchdog itself reports on stderr after leader-run died (it cannot use our logger):
   * a text line, a JSON line (`{"time","level":"warn","event":"watchdog_killing",…,"msg"}`), or nothing.
   */
  stderrFormat?: "text" | "json" | "quiet";
  /** Overrides the script location (tests). */
  script?: string;
}

interface Watched {
  signal: NodeJS.Signals;
  graceMs: number;
}

/** A dying watchdog is restarted, but never more often than this. */
const RESPAWN_MIN_INTERVAL_MS = 1000;

export class Watchdog {
  private proc: ChildProcess | undefined;
  private readonly watched = new Map<number, Watched>();
  private closed = false;
  private lastSpawnAt = -Infinity;
  private respawnTimer: NodeJS.Timeout | undefined;
  private exitedPromise: Promise<void> | undefined;

  constructor(private readonly options: WatchdogOptions = {}) {}

  /** The watchdog's pid while it runs. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Starts the watchdog process if it is not running. Idempotent; `watch` calls it too. */
  start(): void {
    if (this.closed || this.proc !== undefined) return;
    const script = this.options.script ?? WATCHDOG_SCRIPT;
    if (!existsSync(script)) {
      this.emit({
        type: "watchdog_failed",
        error: new Error(
          `watchdog script missing at ${script}: the build must copy src/child/watchdog-process.cjs to dist/child/`,
        ),
      });
      return;
    }
    this.lastSpawnAt = performance.now();
    let proc: ChildProcess;
    try {
      proc = spawn(process.execPath, ["--no-warnings", script, String(process.pid), this.options.stderrFormat ?? "text"], {
        // stdout is the child's; stderr is our log stream.
        stdio: ["pipe", "ignore", "inherit"],
        detached: true,
        // Nothing from our environment: NODE_OPTIONS (--import tsx, --require …) would only slow it down.
        env: {},
      });
    } catch (error) {
      this.emit({ type: "watchdog_failed", error });
      return;
    }
    if (proc.pid === undefined) {
      proc.once("error", (error) => this.emit({ type: "watchdog_failed", error }));
      return;
    }
    this.proc = proc;
    proc.stdin?.on("error", () => {
      // EPIPE after the watchdog died: the exit handler below restarts it.
    });
    this.exitedPromise = new Promise((resolve) => {
      proc.once("exit", (code, signal) => {
        if (this.proc === proc) this.proc = undefined;
        if (!this.closed) {
          this.emit({ type: "watchdog_exited", pid: proc.pid ?? 0, code, signal });
          this.scheduleRespawn();
        }
        resolve();
      });
    });
    proc.unref();
    (proc.stdin as (NodeJS.WritableStream & { unref?: () => void }) | null)?.unref?.();
    this.emit({ type: "watchdog_started", pid: proc.pid });
    for (const [pgid, w] of this.watched) this.write(`watch ${pgid} ${w.signal} ${w.graceMs}`);
  }

  /**
   * Registers a group: if leader-run dies, it gets `signal`, then SIGKILL after `graceMs`. Resolves
   * once the line is in the kernel's pipe (the watchdog sees it even if we die right after), or at
   * once when there is no watchdog to tell.
   */
  watch(pgid: number, signal: NodeJS.Signals, graceMs: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.watched.set(pgid, { signal, graceMs: Math.max(0, Math.round(graceMs)) });
    if (this.proc === undefined) {
      // start() sends every registered group, this one included.
      this.start();
      return this.flushed();
    }
    return this.write(`watch ${pgid} ${signal} ${Math.max(0, Math.round(graceMs))}`);
  }

  /** The group is gone (reaped by us): forget it, so a recycled pid is never killed. */
  unwatch(pgid: number): void {
    if (!this.watched.delete(pgid)) return;
    this.write(`unwatch ${pgid}`);
  }

  /** Groups currently registered. */
  watching(): number[] {
    return [...this.watched.keys()];
  }

  /**
   * Closes the pipe and waits for the watchdog to exit. Groups still registered are stopped exactly
   * as if leader-run had died, so call it after every child was stopped.
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.respawnTimer !== undefined) clearTimeout(this.respawnTimer);
    const proc = this.proc;
    if (proc === undefined) return;
    // Keep the event loop alive until it is gone: the process is unref'd otherwise.
    proc.ref();
    proc.stdin?.end();
    await this.exitedPromise;
  }

  /** Resolves when the line has been handed to the kernel, or could not be (the watchdog is gone). */
  private write(line: string): Promise<void> {
    const stdin = this.proc?.stdin;
    if (stdin === null || stdin === undefined || stdin.destroyed) return Promise.resolve();
    return new Promise((resolve) => stdin.write(`${line}\n`, () => resolve()));
  }

  /** Resolves once everything written so far has been handed to the kernel. */
  private flushed(): Promise<void> {
    return this.write("");
  }

  private scheduleRespawn(): void {
    if (this.closed || this.respawnTimer !== undefined) return;
    const wait = Math.max(0, this.lastSpawnAt + RESPAWN_MIN_INTERVAL_MS - performance.now());
    this.respawnTimer = setTimeout(() => {
      this.respawnTimer = undefined;
      if (this.watched.size > 0) this.start();
    }, wait);
    this.respawnTimer.unref();
  }

  private emit(event: ChildEvent): void {
    this.options.log?.(event);
  }
}

let shared: Watchdog | undefined;

/** The process-wide watchdog `startChild` uses unless given one. */
export function sharedWatchdog(): Watchdog {
  shared ??= new Watchdog();
  return shared;
}
