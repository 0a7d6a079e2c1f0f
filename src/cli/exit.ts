import { constants } from "node:os";
import { callsSettled, hungCalls } from "../locks/hung-calls.js";
import type { Logger } from "./log.js";

/**
 * Leaving the process when a lock call never returned (a file system that hangs: see
 * src/locks/hung-calls.ts). Such a call holds a thread-pool thread, and both a natural exit and
 * `process.exit()` wait for it, forever. A fatal signal ends every thread at once, so leader-run ends
 * itself by one: the stop signal it was stopped with (a shell reports the same 128+N status it would
 * have exited with), otherwise SIGKILL, after saying so.
 */

const STOP_SIGNALS: readonly NodeJS.Signals[] = ["SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM"];

/** The stop signal an exit code stands for (130: SIGINT), if any. */
function signalFor(code: number): NodeJS.Signals | undefined {
  return STOP_SIGNALS.find((s) => ((constants.signals as Record<string, number | undefined>)[s] ?? Number.NaN) + 128 === code);
}

/**
 * Waits until every bounded lock call has returned or been abandoned (each within its bound: a call
 * still in flight when we are done may yet hang), then logs why the exit will be a signal instead of
 * `code` when one hangs. The caller returns `code` as usual; `endIfHung` does the rest.
 */
export async function noteHungExit(log: Logger, code: number): Promise<void> {
  await callsSettled();
  const { count, what } = hungCalls();
  if (count === 0) return;
  const signal = signalFor(code) ?? "SIGKILL";
  log.error(
    "exit_blocked",
    { exit_code: code, signal, hung: what },
    `a file-system call did not return (${what ?? "?"}); a process cannot exit normally while one hangs, so leader-run ends by ${signal} instead of exiting with ${code}`,
  );
}

/** Called by bin/leader-run.js after main(): ends the process by a signal when a call hangs. */
export function endIfHung(code: number): void {
  if (hungCalls().count === 0) return;
  const signal = signalFor(code);
  if (signal !== undefined) {
    // Without listeners Node restores the default action: the process dies of the signal.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
  }
  process.kill(process.pid, "SIGKILL");
}
