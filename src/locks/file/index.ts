/**
 * The file backend (`--lock file:[dir]`, the default): one lease per file in a private directory, for
 * processes on one host. `leader-run/locks/file` exports this module.
 */
import type { LockBackend, LockCapabilities } from "../backend.js";
import { FileLock, type FileLockOptions } from "./lock.js";

export * from "./lock.js";
export type { GuardOptions, ProcessGuard } from "../backend.js";

export const fileCapabilities: LockCapabilities = {
  expiresByItself: false,
  notifies: true,
  seesHolderProcesses: true,
  leaseDurationResolutionMs: 1000,
  timeResolutionMs: 1,
  termSurvivesDelete: false,
  rawChangesOnEveryWrite: true,
  announcesRenewals: false,
};

export const fileBackend: LockBackend<"file"> = {
  kind: "file",
  capabilities: fileCapabilities,
  async open(spec, options) {
    // A file-system call slower than the renew deadline has cost a leader its lease anyway.
    const fileOptions: FileLockOptions = { name: options.name, identity: options.identity, leaseDurationMs: options.leaseDurationMs, fsTimeoutMs: options.renewDeadlineMs };
    if (spec.dir !== undefined) fileOptions.dir = spec.dir;
    const lock = new FileLock(fileOptions);
    return { lock, processGuard: lock };
  },
};
