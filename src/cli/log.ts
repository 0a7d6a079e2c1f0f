import { redactSecrets } from "../locks/url.js";

/**
 * leader-run's own log: one line per event on stderr (the child owns stdout), text for people or JSON
 * lines for collectors. Deliberately tiny (no logging library): leader-run starts on every cron run.
 *
 * Event names are a stable interface (alerts and dashboards match on them): add new ones, never
 * rename. Every string that reaches the output goes through `redactSecrets`, so a connection string
 * echoed by a driver cannot leak its password.
 */

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * The event names leader-run emits (documentation and tests; the logger accepts any snake_case name,
 * but keep this list in step with what run.ts logs).
 */
export const LOG_EVENTS = [
  "lease_name", // the derived lease name, at start
  "campaigning",
  "waiting", // someone else holds the lease
  "acquire_failed",
  "acquired",
  "renewed", // debug
  "renew_failed",
  "lost",
  "handing_over", // a hand-over was requested (step-down): stopping the child, then releasing
  "call_abandoned", // debug: a lock call dropped when leadership ended or the campaign stopped
  "identity_in_use", // a record naming our identity was written by another process
  "lease_deleted", // the lease record vanished; re-created with a higher term after a lease duration
  "released",
  "release_failed",
  "not_released", // the child's group could not be confirmed gone: the lease is left to expire
  "new_leader",
  "not_acquired",
  "unavailable",
  "child_started",
  "child_exited",
  "child_failed",
  "restarting",
  "killing",
  "stragglers",
  "group_gone", // debug: the child's group is gone; the lease may be released
  "guard_armed", // debug: the guard acknowledged the child's group and deadline; the gate opens next
  "lease_changed", // debug: the backend notified a change of the lease while campaigning
  "group_survived",
  "stopping",
  "signal_ignored",
  "guard_unavailable", // no child starts (or the running one is stopped) without a live guard
  "guard_exited", // the guard died and is being restarted
  "http_listening",
  "http_error",
  "warning",
  "backend_warning", // a library's own console output, routed through this logger
  "hook_finished", // a lifecycle hook ended (exit_code, signal, duration_ms)
  "hook_failed", // a lifecycle hook could not be started
  "holding", // --min-hold: the command is done, the lease is kept a while
  "usage_error", // under --log-format json
  "error",
  "internal_error",
] as const;
export type KnownLogEvent = (typeof LOG_EVENTS)[number];

export type LogValue = string | number | boolean | null | undefined | Date | Error | readonly string[];
export type LogFields = Readonly<Record<string, LogValue>>;

export interface Logger {
  readonly level: LogLevel;
  readonly format: LogFormat;
  isEnabled(level: LogLevel): boolean;
  debug(event: string, fields?: LogFields, message?: string): void;
  info(event: string, fields?: LogFields, message?: string): void;
  warn(event: string, fields?: LogFields, message?: string): void;
  error(event: string, fields?: LogFields, message?: string): void;
  /** A logger that adds `fields` (e.g. lease and identity) to every line. */
  child(fields: LogFields): Logger;
}

export interface LogSink {
  write(chunk: string): unknown;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Defaults to process.stderr. */
  sink?: LogSink;
  fields?: LogFields;
  /** For tests. */
  now?: () => Date;
}

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export function createLogger(options: LoggerOptions = {}): Logger {
  return new LineLogger(
    options.level ?? "info",
    options.format ?? "text",
    options.sink ?? process.stderr,
    options.fields ?? {},
    options.now ?? (() => new Date()),
  );
}

class LineLogger implements Logger {
  constructor(
    readonly level: LogLevel,
    readonly format: LogFormat,
    private readonly sink: LogSink,
    private readonly fields: LogFields,
    private readonly now: () => Date,
  ) {}

  isEnabled(level: LogLevel): boolean {
    return RANK[level] >= RANK[this.level];
  }

  debug(event: string, fields?: LogFields, message?: string): void {
    this.log("debug", event, fields, message);
  }
  info(event: string, fields?: LogFields, message?: string): void {
    this.log("info", event, fields, message);
  }
  warn(event: string, fields?: LogFields, message?: string): void {
    this.log("warn", event, fields, message);
  }
  error(event: string, fields?: LogFields, message?: string): void {
    this.log("error", event, fields, message);
  }

  child(fields: LogFields): Logger {
    return new LineLogger(this.level, this.format, this.sink, { ...this.fields, ...fields }, this.now);
  }

  private log(level: LogLevel, event: string, fields: LogFields | undefined, message: string | undefined): void {
    if (!this.isEnabled(level)) return;
    const merged: Record<string, LogValue> = { ...this.fields, ...fields };
    if (message !== undefined) merged.msg = message;
    const line =
      this.format === "json"
        ? jsonLine(this.now(), level, event, merged)
        : textLine(this.now(), level, event, merged);
    try {
      this.sink.write(line);
    } catch {
      // stderr gone (EPIPE): logging must never take leader-run down while it guards a child.
    }
  }
}

/** A logger that drops everything (library use, tests). */
export const silentLogger: Logger = new LineLogger("error", "text", { write: () => true }, {}, () => new Date());

function plain(value: LogValue): string | number | boolean | null | string[] {
  if (value === undefined || value === null) return null;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "invalid date" : value.toISOString();
  if (value instanceof Error) return redactSecrets(value.message || value.name);
  if (typeof value === "string") return redactSecrets(value);
  if (Array.isArray(value)) return value.map((v: string) => redactSecrets(String(v)));
  return value as number | boolean;
}

function jsonLine(time: Date, level: LogLevel, event: string, fields: Record<string, LogValue>): string {
  const out: Record<string, unknown> = { time: time.toISOString(), level, event };
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined || k === "time" || k === "level" || k === "event") continue;
    out[k] = plain(v);
  }
  return `${JSON.stringify(out)}\n`;
}

/** `2024-05-01T12:00:00.123Z leader-run INFO  acquired lease=x identity=y term=3 msg="…"` */
function textLine(time: Date, level: LogLevel, event: string, fields: Record<string, LogValue>): string {
  let line = `${time.toISOString()} leader-run ${level.toUpperCase().padEnd(5)} ${event}`;
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    const p = plain(v);
    const text = Array.isArray(p) ? p.join(" ") : String(p);
    line += ` ${k}=${quoteIfNeeded(text)}`;
  }
  return `${line}\n`;
}

function quoteIfNeeded(text: string): string {
  // logfmt: quote empty values and anything with spaces, quotes, '=' or control characters.
  return text === "" || /[\s"=\\\p{Cc}]/u.test(text) ? JSON.stringify(text) : text;
}

/** Effective level: `--quiet` means warnings and errors only, whatever `--log-level` asks for below that. */
export function effectiveLevel(level: LogLevel, quiet: boolean): LogLevel {
  return quiet && RANK[level] < RANK.warn ? "warn" : level;
}
