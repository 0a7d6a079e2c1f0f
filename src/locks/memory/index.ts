/**
 * The in-memory backend, for tests of code built on the elector: several `MemoryLock`s sharing one
 * `MemoryStore` behave like processes sharing one lease. No `--lock` URL selects it.
 * `leader-run/locks/memory` exports this module.
 */
import type { LockCapabilities } from "../backend.js";

export * from "./lock.js";

/** With `watch: true` (MemoryLockOptions); without it the lock has no `watch` and `notifies` is false. */
export const memoryCapabilities: LockCapabilities = {
  expiresByItself: false,
  notifies: true,
  seesHolderProcesses: false,
  leaseDurationResolutionMs: 1000,
  // Records keep the millisecond; only the raw form keeps whole seconds (see rawChangesOnEveryWrite).
  timeResolutionMs: 1,
  termSurvivesDelete: false,
  rawChangesOnEveryWrite: false,
  announcesRenewals: false,
};
