import { childProcess } from "../builtin.js";
import type { Logger } from "./log.js";

/**
 * Lifecycle hooks (`--on-started-leading`, `--on-stopped-leading`, `--on-new-leader`): short shell
 * commands for alerting, DNS or VIP updates, cache warm-up. They are fired and never awaited by the
 * election or the child control, so a slow or hanging hook cannot delay stopping the child or
 * releasing the lease; each runs in its own process group, is killed after `--hook-timeout`, and its
 * exit status is logged. Before leader-run exits it waits for the hooks still running (bounded by
 * that same timeout), after the lease was released.
 */

export const HOOK_NAMES = ["on-started-leading", "on-stopped-leading", "on-new-leader"] as const;
export type HookName = (typeof HOOK_NAMES)[number];

export interface HookContext {
  name: string;
  identity: string;
  term: number | undefined;
  /** The leader seen now (on-new-leader), or undefined. */
  newLeader?: string | undefined;
}

/** After SIGTERM at the timeout, how long before SIGKILL. */
const KILL_AFTER_MS = 1000;

export class HookRunner {
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly commands: Partial<Record<HookName, string>>,
    private readonly timeoutMs: number,
    private readonly log: Logger,
  ) {}

  /** Starts `hook` if configured; returns at once. */
  fire(hook: HookName, ctx: HookContext): void {
    const command = this.commands[hook];
    if (command === undefined) return;
    const done = this.runOne(hook, command, ctx).catch((error: unknown) => {
      this.log.warn("hook_failed", { hook }, `--${hook} could not run: ${error instanceof Error ? error.message : String(error)}`);
    });
    this.running.add(done);
    void done.finally(() => this.running.delete(done));
  }

  /** Waits for the hooks still running (each is bounded by the timeout). */
  async drain(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }

  private runOne(hook: HookName, command: string, ctx: HookContext): Promise<void> {
    const env: NodeJS.ProcessEnv = { ...process.env };
    env.LEADER_RUN_HOOK = hook;
    env.LEADER_RUN_NAME = ctx.name;
    env.LEADER_RUN_IDENTITY = ctx.identity;
    if (ctx.term !== undefined) env.LEADER_RUN_FENCING_TOKEN = String(ctx.term);
    if (ctx.newLeader !== undefined) env.LEADER_RUN_NEW_LEADER = ctx.newLeader;
    const started = performance.now();
    return new Promise<void>((resolve, reject) => {
      // stdout goes to our stderr: the guarded command owns stdout.
      const child = childProcess().spawn("/bin/sh", ["-c", command], { env, stdio: ["ignore", 2, 2], detached: true });
      let timedOut = false;
      const killGroup = (signal: NodeJS.Signals): void => {
        try {
          if (child.pid !== undefined) process.kill(-child.pid, signal);
        } catch {
          // already gone
        }
      };
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup("SIGTERM");
        // Not unref'd: a hook's shell that exits on SIGTERM can leave its group's other processes, and
        // they get their SIGKILL before we exit.
        setTimeout(() => killGroup("SIGKILL"), KILL_AFTER_MS);
      }, this.timeoutMs);
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        const fields = { hook, exit_code: code ?? undefined, signal: signal ?? undefined, duration_ms: Math.round(performance.now() - started) };
        if (timedOut) this.log.warn("hook_finished", fields, `--${hook} ran longer than --hook-timeout ${this.timeoutMs}ms and was killed`);
        else if (code === 0) this.log.info("hook_finished", fields);
        else this.log.warn("hook_finished", fields, `--${hook} failed`);
        resolve();
      });
    });
  }
}
