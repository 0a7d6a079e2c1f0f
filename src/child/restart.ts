import type { ChildExit } from "./supervisor.js";

/**
 * `--restart never|on-failure|always` with `--restart-delay`: what to do when the child exits by
 * itself while we still lead (never after a stop we asked for; the caller does not ask then).
 *
 * Backoff: the first restart waits `initialDelayMs`, each further one twice the previous, capped at
 * `maxDelayMs` (default 5 min, Kubernetes' CrashLoopBackOff cap). A run that lasted at least
 * `resetAfterMs` (default 60 s) counts as healthy and starts the sequence over, so a job that fails
 * now and then is restarted quickly while a crash loop settles at one attempt per cap. A delay of
 * 0 stays 0: the user asked for immediate restarts. "Failure" is any non-zero exit status,
 * including death by a signal (128+N).
 */

export const RESTART_MODES = ["never", "on-failure", "always"] as const;
export type RestartMode = (typeof RESTART_MODES)[number];

export const DEFAULT_MAX_RESTART_DELAY_MS = 5 * 60_000;
export const DEFAULT_RESTART_RESET_AFTER_MS = 60_000;

export interface RestartPolicyOptions {
  mode: RestartMode;
  initialDelayMs: number;
  maxDelayMs?: number;
  resetAfterMs?: number;
}

export function isRestartMode(value: string): value is RestartMode {
  return (RESTART_MODES as readonly string[]).includes(value);
}

export class RestartPolicy {
  readonly mode: RestartMode;
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly resetAfterMs: number;
  private next: number;

  constructor(options: RestartPolicyOptions) {
    if (!isRestartMode(options.mode)) throw new RangeError(`restart mode must be one of ${RESTART_MODES.join(", ")}, got ${String(options.mode)}`);
    const maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_RESTART_DELAY_MS;
    const resetAfterMs = options.resetAfterMs ?? DEFAULT_RESTART_RESET_AFTER_MS;
    for (const [name, v] of [["initialDelayMs", options.initialDelayMs], ["maxDelayMs", maxDelayMs], ["resetAfterMs", resetAfterMs]] as const) {
      if (!Number.isFinite(v) || v < 0) throw new RangeError(`${name} must be a non-negative number of milliseconds, got ${v}`);
    }
    this.mode = options.mode;
    this.initialDelayMs = options.initialDelayMs;
    // A first delay above the cap is the user's explicit choice: it becomes the cap.
    this.maxDelayMs = Math.max(maxDelayMs, options.initialDelayMs);
    this.resetAfterMs = resetAfterMs;
    this.next = this.initialDelayMs;
  }

  /** Milliseconds to wait before restarting, or undefined: do not restart, exit with the child's status. */
  nextDelay(exit: Pick<ChildExit, "exitCode">, ranForMs: number): number | undefined {
    if (this.mode === "never") return undefined;
    if (this.mode === "on-failure" && exit.exitCode === 0) return undefined;
    if (ranForMs >= this.resetAfterMs) this.next = this.initialDelayMs;
    const delay = this.next;
    this.next = Math.min(this.next * 2, this.maxDelayMs);
    return delay;
  }

  /** Starts the sequence over, e.g. after leadership was lost and regained. */
  reset(): void {
    this.next = this.initialDelayMs;
  }
}
