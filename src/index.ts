/**
 * leader-run as a library: client-go's leader election for Node.js, with stricter safety
 * (see README "Library").
 */
export { LeaderElector, LeadershipEndedError, runOrDie } from "./election/elector.js";
export { Term, effectiveLeaseDurationMs, defaultKillMarginMs, KILL_MARGIN_MIN_MS, KILL_MARGIN_RATIO, type TermView } from "./election/term.js";
export {
  ElectionConfigError,
  JITTER_FACTOR,
  validateElectionConfig,
  type ElectionConfig,
  type LeaderCallbacks,
} from "./election/config.js";
export { HealthzAdaptor, newLeaderHealthzAdaptor, type LeaderHealthChecker } from "./election/healthz.js";
export { setMetricsProvider, type MetricsProvider } from "./election/metrics.js";
export type { ElectionEvent, LostReason } from "./election/events.js";
export {
  emptyRecord,
  formatTime,
  parseTime,
  recordFromJSON,
  recordToJSON,
  type LeaderElectionRecord,
} from "./election/record.js";
export { MAX_TIMER_MS, SystemClock, systemClock, seededRandom, sleep, type Clock, type TimerHandle } from "./election/clock.js";
export {
  AlreadyExistsError,
  ConflictError,
  CorruptRecordError,
  LockError,
  NotFoundError,
  PermanentLockError,
  type ResourceLock,
} from "./election/lock.js";
// Backends without heavy dependencies; Redis and Kubernetes load from `leader-run/locks/redis` and
// `leader-run/locks/kubernetes` so that importing the core never loads their clients.
export { FileLock, FileLockConfigError, defaultLockDir, type FileLockOptions } from "./locks/file/index.js";
export { LockConfigError, BackendUnavailableError } from "./locks/errors.js";
export type { LockBackend, LockCapabilities, OpenLockOptions, OpenedLock, ProcessGuard, GuardOptions } from "./locks/backend.js";
export { MemoryLock, MemoryStore } from "./locks/memory/index.js";
