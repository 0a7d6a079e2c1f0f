import { readFileSync } from "node:fs";
import { formatWithOptions } from "node:util";
import { LockError } from "../election/lock.js";
import { redactSecrets } from "../locks/url.js";
import { CliError, ExitCode, LockConfigError, REPORT_HINT } from "./errors.js";
import { noteHungExit } from "./exit.js";
import { createLogger } from "./log.js";
import type { LogSink, Logger } from "./log.js";
import { parseCommandLine } from "./options.js";
import type { LeaseTarget, ParsedCommandLine } from "./options.js";
// The commands are imported statically, not each by import(): in the bundle every lazily imported
// module is an entry of its own, and the code they share with main and with each other was split
// into some twenty small chunks, each resolved, read and compiled on its own at every start; with
// these in main.js a --no-wait run loads 13 files instead of 21 (≈ 10 ms of CPU, docs/performance.md).
// What is heavy and not always needed stays lazy: yargs, the backends, the child supervisor, --http.
import { runLeader } from "./run.js";
import { runStatus } from "./status.js";
import { runRelease } from "./release.js";
import { runStepDown } from "./step-down.js";

/**
 * The `leader-run` entry point: parse, dispatch to run / status / release, and turn every failure
 * into one line `leader-run: <message>` on stderr plus the contract's exit code. Nothing here runs
 * at import time (bin/leader-run.js imports this on every cron run).
 */

export interface MainIO {
  stdout: LogSink;
  stderr: LogSink;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

const PREFIX = "leader-run: ";

export { endIfHung } from "./exit.js";

export async function main(argv: readonly string[], io: Partial<MainIO> = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const env = io.env ?? process.env;
  let parsed: ParsedCommandLine | undefined;
  try {
    parsed = await parseCommandLine(argv, { env, cwd: io.cwd ?? process.cwd(), version: packageVersion() });
    if (parsed.command === "output") {
      stdout.write(parsed.text);
      return ExitCode.OK;
    }
    if (parsed.command === "run") {
      // run.ts adds lease and identity to its lines and logs the option warnings itself.
      const log = createLogger({ level: parsed.options.logLevel, format: parsed.options.logFormat, sink: stderr });
      const restore = routeConsole(log);
      try {
        const code = await runLeader(parsed.options, log);
        await noteHungExit(log, code);
        return code;
      } finally {
        restore();
      }
    }
    const log = loggerFor(parsed.options, stderr);
    for (const warning of parsed.options.warnings) log.warn("warning", {}, warning);
    const restore = routeConsole(log);
    try {
      const code = await oneShot(parsed, log, stdout);
      await noteHungExit(log, code);
      return code;
    } catch (e) {
      const code = exitCodeFor(e).code;
      const reported = reportError(e, stderr, parsed.options.logLevel === "debug", asksJson(parsed));
      await noteHungExit(log, code);
      return reported;
    } finally {
      restore();
    }
  } catch (e) {
    const debug = parsed && parsed.command !== "output" ? parsed.options.logLevel === "debug" : wantsDebug(argv, env);
    const json = parsed && parsed.command !== "output" ? asksJson(parsed) : wantsJson(argv, env);
    return reportError(e, stderr, debug, json);
  }
}

async function oneShot(parsed: Extract<ParsedCommandLine, { command: "status" | "release" | "step-down" }>, log: Logger, stdout: LogSink): Promise<number> {
  const warn = (message: string): void => log.warn("warning", {}, message);
  if (parsed.command === "step-down") {
    return runStepDown(parsed.options, stdout);
  }
  if (parsed.command === "status") {
    return runStatus(parsed.options, stdout, undefined, warn);
  }
  return runRelease(parsed.options, stdout, undefined, warn);
}

/** The logger of a command: its options' format and level, with lease and identity on every line. */
export function loggerFor(target: LeaseTarget, stderr: LogSink): Logger {
  return createLogger({
    level: target.logLevel,
    format: target.logFormat,
    sink: stderr,
    fields: { lease: target.name, identity: target.identity },
  });
}

/** Error classes of other modules that mean "fix your flags" (they cannot import ours). */
const USAGE_ERROR_NAMES = new Set(["ElectionConfigError", "HttpAddressError", "HttpListenError"]);

/** Maps an error to its exit code (and whether it is a bug). */
export function exitCodeFor(e: unknown): { code: number; internal: boolean } {
  if (e instanceof CliError) return { code: e.exitCode, internal: false };
  if (e instanceof Error) {
    if (USAGE_ERROR_NAMES.has(e.name) || e instanceof LockConfigError) return { code: ExitCode.USAGE, internal: false };
    // PermanentLockError, or any lock failure that reaches us (a backend a one-shot command cannot
    // reach): the backend is unavailable to us.
    if (e instanceof LockError) return { code: ExitCode.UNAVAILABLE, internal: false };
  }
  return { code: ExitCode.INTERNAL, internal: true };
}

/**
 * Third-party libraries (ioredis prints `[WARN] …` with console.warn) must not write raw lines into
 * leader-run's log: while a command runs, the console's warn, error, log and info go through `log` as
 * `backend_warning`. Returns the undo.
 */
export function routeConsole(log: Logger): () => void {
  const saved = { warn: console.warn, error: console.error, log: console.log, info: console.info };
  const route = (...args: unknown[]): void => {
    const text = formatWithOptions({ colors: false, breakLength: Infinity }, ...args).replace(/^\[WARN\]\s*/, "");
    log.warn("backend_warning", {}, text);
  };
  console.warn = route;
  console.error = route;
  console.log = route;
  console.info = route;
  return () => Object.assign(console, saved);
}

export function reportError(e: unknown, stderr: LogSink, debug: boolean, json = false): number {
  const { code, internal } = exitCodeFor(e);
  const message = oneLine(e instanceof Error ? e.message || e.name : String(e));
  try {
    if (json) {
      // Under --log-format json every line on stderr is JSON, errors included (collectors parse them).
      const event = code === ExitCode.USAGE ? "usage_error" : internal ? "internal_error" : "error";
      const line: Record<string, unknown> = { time: new Date().toISOString(), level: "error", event, exit_code: code, msg: internal ? `internal error: ${message}; ${REPORT_HINT}` : message };
      if (debug && e instanceof Error && e.stack) line.stack = redactSecrets(e.stack);
      stderr.write(`${JSON.stringify(line)}\n`);
      return code;
    }
    if (internal) {
      stderr.write(
        `${PREFIX}internal error: ${message}; ${REPORT_HINT}${debug ? "" : " (--log-level debug shows the stack)"}\n`,
      );
    } else {
      stderr.write(`${PREFIX}${message}\n`);
    }
    if (debug && e instanceof Error && e.stack) stderr.write(`${redactSecrets(e.stack)}\n`);
  } catch {
    // stderr closed: the exit code still tells.
  }
  return code;
}

function oneLine(text: string): string {
  return redactSecrets(text).replace(/\s*\n\s*/g, "; ");
}

/** `--log-level debug` before options could be parsed (for the stack of an early internal error). */
function wantsDebug(argv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  const end = argv.indexOf("--");
  const own = end < 0 ? argv : argv.slice(0, end);
  for (let i = 0; i < own.length; i++) {
    if (own[i] === "--log-level=debug" || (own[i] === "--log-level" && own[i + 1] === "debug")) return true;
  }
  return env.LEADER_RUN_LOG_LEVEL === "debug";
}

function asksJson(parsed: Exclude<ParsedCommandLine, { command: "output" }>): boolean {
  return parsed.options.logFormat === "json" || (parsed.command !== "run" && parsed.options.output === "json");
}

/** `--log-format json` (or `--output json`) before options could be parsed (usage errors are then JSON too). */
function wantsJson(argv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  const end = argv.indexOf("--");
  const own = end < 0 ? argv : argv.slice(0, end);
  for (let i = own.length - 1; i >= 0; i--) {
    const word = own[i] ?? "";
    for (const flag of ["--log-format", "--output"]) {
      if (word === `${flag}=json` || (word === flag && own[i + 1] === "json")) return true;
    }
  }
  return env.LEADER_RUN_LOG_FORMAT === "json" || env.LEADER_RUN_OUTPUT === "json";
}

let version: string | undefined;

/** From package.json, two levels up from both src/cli and dist/cli. */
export function packageVersion(): string {
  if (version === undefined) {
    try {
      const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: unknown };
      version = typeof pkg.version === "string" ? pkg.version : "unknown";
    } catch {
      version = "unknown";
    }
  }
  return version;
}
