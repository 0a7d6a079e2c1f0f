/**
 * The fault table. A fault is one row: a kind, whether it needs a current leader to aim at, and what it
 * does. Process faults (this file) apply to every backend; a backend adds its server faults through its
 * adapter (test/fault/backends.ts), so etcd or PostgreSQL faults are a few more rows there.
 *
 * Every fault must leave nothing stopped behind when `apply` resolves (it SIGCONTs what it stopped):
 * the driver then waits for a leader again and measures the next fault from a healthy state.
 */
import { childrenOf, readStat } from "./procfs.js";

/** Seeded PRNG (mulberry32): the same seed gives the same fault sequence, targets and delays. */
export class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }
  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      [out[i], out[j]] = [out[j] as T, out[i] as T];
    }
    return out;
  }
}

export interface Timing {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** The current leader as seen from /proc: the witness and the leader-run that is its parent. */
export interface Leader {
  leaderRun: number;
  witness: number;
  /** The command's process group. */
  pgid: number;
  /** leader-run's other children: its guard (today watchdog-process.cjs; found by parent, not by name). */
  guards: number[];
  token: number | null;
}

export interface FaultContext {
  rng: Rng;
  timing: Timing;
  sleep(ms: number): Promise<void>;
  /** kill(2) that ignores a process already gone; a negative pid is a process group. */
  signal(pid: number, signal: NodeJS.Signals): void;
}

export interface FaultSpec {
  kind: string;
  /** One line for the docs and the table. */
  description: string;
  /** Aimed at the current leader (the driver finds it and passes it to `apply`). */
  needsLeader: boolean;
  /**
   * Not guardable by leader-run alone (a whole-machine freeze): only with --include-unguardable, and
   * reported separately, never counted against the guarantee.
   */
  unguardable?: boolean;
  /** Applies the fault; resolves with a short description of the target, once nothing is left stopped. */
  apply(ctx: FaultContext, leader: Leader | undefined): Promise<string>;
}

/** leader-run's children other than `commandSide` (the command, or the process leading to it): its guard process(es). */
export function guardsOf(leaderRun: number, commandSide: number): number[] {
  return childrenOf(leaderRun)
    .filter((c) => c.pid !== commandSide)
    .map((c) => c.pid);
}

/**
 * A guard that leads its own process group (both the Node watchdog and the sh guard do) is signalled as
 * a group, so its helpers (a subshell, a sleeping timer) are stopped or killed with it; the fault is
 * "the guard", not one of its processes.
 */
export function guardTarget(pid: number, commandPgid: number): number {
  const pgrp = readStat(pid)?.pgrp;
  return pgrp === pid && pgrp !== commandPgid ? -pid : pid;
}

function need(leader: Leader | undefined): Leader {
  if (leader === undefined) throw new Error("fault needs a leader");
  return leader;
}

async function stopFor(ctx: FaultContext, pids: readonly number[], ms: number): Promise<void> {
  for (const pid of pids) ctx.signal(pid, "SIGSTOP");
  try {
    await ctx.sleep(ms);
  } finally {
    for (const pid of pids) ctx.signal(pid, "SIGCONT");
  }
}

export const PROCESS_FAULTS: readonly FaultSpec[] = [
  {
    kind: "kill-leader",
    description: "SIGKILL the leading leader-run",
    needsLeader: true,
    async apply(ctx, l) {
      const { leaderRun } = need(l);
      ctx.signal(leaderRun, "SIGKILL");
      return `leader-run ${leaderRun}`;
    },
  },
  {
    kind: "term-leader",
    description: "SIGTERM the leading leader-run (clean stop and release)",
    needsLeader: true,
    async apply(ctx, l) {
      const { leaderRun } = need(l);
      ctx.signal(leaderRun, "SIGTERM");
      return `leader-run ${leaderRun}`;
    },
  },
  {
    kind: "stop-leader-long",
    description: "SIGSTOP the leading leader-run for LD + 0.5..2 s, then SIGCONT",
    needsLeader: true,
    async apply(ctx, l) {
      const { leaderRun } = need(l);
      const ms = ctx.timing.leaseDurationMs + ctx.rng.int(500, 2000);
      await stopFor(ctx, [leaderRun], ms);
      return `leader-run ${leaderRun} stopped ${ms} ms`;
    },
  },
  {
    kind: "stop-leader-short",
    description: "SIGSTOP the leading leader-run for 0.2 s..LD - 0.2 s, then SIGCONT",
    needsLeader: true,
    async apply(ctx, l) {
      const { leaderRun } = need(l);
      const ms = ctx.rng.int(200, ctx.timing.leaseDurationMs - 200);
      await stopFor(ctx, [leaderRun], ms);
      return `leader-run ${leaderRun} stopped ${ms} ms`;
    },
  },
  {
    kind: "kill-child",
    description: "SIGKILL the command (the witness)",
    needsLeader: true,
    async apply(ctx, l) {
      const { witness } = need(l);
      ctx.signal(witness, "SIGKILL");
      return `witness ${witness}`;
    },
  },
  {
    kind: "kill-guard",
    description: "SIGKILL the leader's guard process (its other child)",
    needsLeader: true,
    async apply(ctx, l) {
      const { guards, pgid } = need(l);
      for (const pid of guards) ctx.signal(guardTarget(pid, pgid), "SIGKILL");
      return `guard ${guards.join(",") || "(none found)"}`;
    },
  },
  {
    kind: "stop-guard",
    description: "SIGSTOP the leader's guard for LD + 0.5..2 s, then SIGCONT",
    needsLeader: true,
    async apply(ctx, l) {
      const { guards, pgid } = need(l);
      const ms = ctx.timing.leaseDurationMs + ctx.rng.int(500, 2000);
      await stopFor(ctx, guards.map((g) => guardTarget(g, pgid)), ms);
      return `guard ${guards.join(",") || "(none found)"} stopped ${ms} ms`;
    },
  },
  {
    kind: "kill-guard-then-leader",
    // leader-run notices a dead guard and starts another within milliseconds: the window is that short.
    description: "SIGKILL the guard, then 0..50 ms later SIGKILL the leading leader-run",
    needsLeader: true,
    async apply(ctx, l) {
      const { guards, leaderRun, pgid } = need(l);
      for (const pid of guards) ctx.signal(guardTarget(pid, pgid), "SIGKILL");
      const ms = ctx.rng.int(0, 50);
      await ctx.sleep(ms);
      ctx.signal(leaderRun, "SIGKILL");
      return `guard ${guards.join(",") || "(none found)"}, leader-run ${leaderRun} ${ms} ms later`;
    },
  },
  {
    kind: "freeze-all",
    description: "SIGSTOP leader-run, guard and command together for LD + 0.5..2 s (a VM pause)",
    needsLeader: true,
    unguardable: true,
    async apply(ctx, l) {
      const { guards, leaderRun, witness, pgid } = need(l);
      const ms = ctx.timing.leaseDurationMs + ctx.rng.int(500, 2000);
      await stopFor(ctx, [leaderRun, ...guards.map((g) => guardTarget(g, pgid)), witness], ms);
      return `leader-run ${leaderRun}, guard ${guards.join(",")}, witness ${witness} stopped ${ms} ms`;
    },
  },
];
