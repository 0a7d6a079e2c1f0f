/**
 * What the supervisor reports, for logs. Names match the CLI's log events where one exists
 * (`child_started`, `child_exited`, `killing`). Never needed for correctness.
 */
export type ChildEvent =
  | { type: "child_started"; pid: number; pgid: number; shell: boolean }
  | {
      type: "child_exited";
      pid: number;
      code: number | null;
      signal: NodeJS.Signals | null;
      exitCode: number;
      ranForMs: number;
    }
  /** A signal sent to the whole group by `stop`; `escalation` marks the SIGKILL after the grace. */
  | { type: "killing"; pgid: number; signal: NodeJS.Signals; reason: string; graceMs: number; escalation: boolean }
  /** The group leader exited but other processes of its group (e.g. a shell's background jobs) live on. */
  | { type: "stragglers"; pgid: number }
  /** Processes of the group survived SIGKILL for the whole bounded wait (uninterruptible I/O, setuid). */
  | { type: "group_survived"; pgid: number; waitedMs: number }
  /** Debug: the leader was reaped and no live process of its group remains (the lease may now be released). */
  | { type: "group_gone"; pgid: number }
  /** Debug: the guard acknowledged the group and its deadline; the start gate opens next. */
  | { type: "guard_armed"; pgid: number }
  | { type: "guard_started"; pid: number; shell: string }
  /** The guard died while leader-run lives (someone killed it); it is restarted if groups are watched. */
  | { type: "guard_exited"; pid: number; code: number | null; signal: NodeJS.Signals | null }
  /** The guard could not be started or did not answer: no child starts. */
  | { type: "guard_failed"; error: unknown };
