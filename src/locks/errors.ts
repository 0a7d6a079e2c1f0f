/**
 * Errors every layer above the backends shares. They live here, below the CLI, so that `src/locks/`
 * never reaches up into `src/cli/`: the CLI maps `LockConfigError` to exit 64 (usage) and any
 * `LockError` (src/election/lock.ts) to exit 69.
 */

/**
 * The lock settings are wrong (a malformed `--lock` URL, an invalid lease name for the backend, a
 * missing kubeconfig): nothing was started and retrying cannot help; the user must change them.
 * Deliberately not a `LockError`: the elector must never retry a configuration mistake.
 */
export class LockConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The `--lock` scheme is known but its backend is not part of this build. */
export class BackendUnavailableError extends LockConfigError {
  constructor(readonly scheme: string) {
    super(`the ${scheme} lock backend is not available in this version of leader-run; use --lock file: for now`);
  }
}
