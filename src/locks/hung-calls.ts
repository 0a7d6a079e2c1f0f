/**
 * Calls into the operating system that a lock bounds in time (the file lock's file-system calls),
 * process-wide: how many are in flight, and how many were abandoned because they never returned (a
 * file system on an NFS mount whose server is gone, a FUSE daemon that does not answer).
 *
 * Such a call occupies a libuv thread-pool thread in a wait only a fatal signal ends, and both a
 * natural exit and `process.exit()` wait for the thread pool: the process cannot exit normally until
 * the call returns. The CLI asks this before exiting and ends itself by a signal instead of hanging.
 * Kept apart from the backends so the CLI can ask without loading any of them.
 */
let active = 0;
let hung = 0;
let oldest: string | undefined;
const waiters = new Set<() => void>();

/** A bounded call starts. */
export function callStarted(): void {
  active += 1;
}

/** A bounded call returned in time, or was abandoned (then `hungCallStarted` follows). */
export function callSettled(): void {
  active = Math.max(0, active - 1);
  if (active > 0) return;
  for (const wake of [...waiters]) wake();
  waiters.clear();
}

export function hungCallStarted(what: string): void {
  hung += 1;
  oldest ??= what;
}

/** An abandoned call returned after all. */
export function hungCallEnded(): void {
  hung = Math.max(0, hung - 1);
  if (hung === 0) oldest = undefined;
}

/** Resolves once no bounded call is in flight: each has returned or been abandoned (within its bound). */
export function callsSettled(): Promise<void> {
  if (active === 0) return Promise.resolve();
  return new Promise((resolve) => waiters.add(resolve));
}

/** How many abandoned calls have not returned yet, and what the first of them was. */
export function hungCalls(): { count: number; what: string | undefined } {
  return { count: hung, what: oldest };
}
