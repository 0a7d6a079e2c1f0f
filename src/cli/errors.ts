/**
 * Exit codes of the `leader-run` command (the contract's table) and the errors that map to them.
 * Codes follow sysexits.h where one fits (64 EX_USAGE, 69 EX_UNAVAILABLE, 70 EX_SOFTWARE,
 * 75 EX_TEMPFAIL) so wrappers and cron mailers can tell them apart from a child's own codes.
 */
export const ExitCode = {
  OK: 0,
  /** `status`: nobody holds a live lease (LSB "program is not running"). */
  NO_HOLDER: 3,
  /** Usage or configuration error, before anything started. */
  USAGE: 64,
  /** The backend refuses us for good (authentication, permission, unknown host with --no-wait). */
  UNAVAILABLE: 69,
  /** A bug in leader-run. */
  INTERNAL: 70,
  /** Not acquired: --no-wait and someone else leads, or --wait ran out (see --conflict-exit-code). */
  NOT_ACQUIRED: 75,
  /** Leadership was lost and the child was stopped. */
  LOST: 76,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** How to report bugs; printed with internal errors. */
export const REPORT_HINT = "this is a bug in leader-run: please report it with this line and `leader-run --version`";

/** An error the CLI turns into `leader-run: <message>` and `exitCode`, without a stack. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Bad flags, environment or configuration; nothing was started. Exit 64. */
export class UsageError extends CliError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.USAGE, options);
  }
}

/**
 * Lock settings errors come from below the CLI (src/locks/errors.ts) and exit 64 like a UsageError;
 * re-exported so the CLI's error vocabulary stays in one place.
 */
export { BackendUnavailableError, LockConfigError } from "../locks/errors.js";

/** The backend refuses us for good. Exit 69. */
export class UnavailableError extends CliError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, ExitCode.UNAVAILABLE, options);
  }
}

/** Someone else holds the lease (`release` without `--force`, `--no-wait`). Exit 75 by default. */
export class NotAcquiredError extends CliError {
  constructor(message: string, exitCode: number = ExitCode.NOT_ACQUIRED, options?: ErrorOptions) {
    super(message, exitCode, options);
  }
}
