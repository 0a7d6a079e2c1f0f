/**
 * The Redis backend (`--lock redis://…`, Sentinel and Cluster too). `leader-run/locks/redis` exports
 * this module; ioredis loads only when it is imported.
 */
import { plainBackend, type LockCapabilities } from "../backend.js";
import { openRedisLock } from "./lock.js";

export * from "./lock.js";

export const redisCapabilities: LockCapabilities = {
  // The lease key carries a PEXPIRE of the lease duration.
  expiresByItself: true,
  // Releases are published on the lease's channel.
  notifies: true,
  seesHolderProcesses: false,
  leaseDurationResolutionMs: 1000,
  timeResolutionMs: 1,
  // The fencing counter key never expires and is not the record.
  termSurvivesDelete: true,
  rawChangesOnEveryWrite: true,
  announcesRenewals: true,
};

export const redisBackend = plainBackend("redis", redisCapabilities, (spec, options) => {
  const { name, identity, leaseDurationMs, renewDeadlineMs, env } = options;
  return openRedisLock(spec.url, { name, identity, leaseDurationMs, renewDeadlineMs, env });
});
