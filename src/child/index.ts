export type { ChildEvent } from "./events.js";
export {
  startChild,
  toChildExit,
  ChildSpawnError,
  type ChildExit,
  type ChildHandle,
  type SpawnFailure,
  type StartChildOptions,
  type StopOptions,
  type StopResult,
} from "./supervisor.js";
export { forwardSignals, FORWARDED_SIGNALS, STOP_SIGNALS, type ForwardedSignal, type SignalTarget } from "./signals.js";
export {
  RestartPolicy,
  RESTART_MODES,
  isRestartMode,
  DEFAULT_MAX_RESTART_DELAY_MS,
  DEFAULT_RESTART_RESET_AFTER_MS,
  type RestartMode,
  type RestartPolicyOptions,
} from "./restart.js";
export { Guard, GuardUnavailableError, sharedGuard, guardShell, toBootCentiseconds, GUARD_SCRIPT, type GuardDeadline, type GuardOptions } from "./guard.js";
export { parseSignal, signalNumber, groupHasLiveMembers, killGroup } from "./process-group.js";
