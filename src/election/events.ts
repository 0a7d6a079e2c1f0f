import type { LeaderElectionRecord } from "./record.js";

/**
 * What the elector reports as it works, for logs and metrics. Names match the CLI's log events where
 * one exists. Never needed for correctness.
 */
export type ElectionEvent =
  | { type: "campaigning"; lock: string }
  | { type: "acquire_failed"; lock: string; error?: unknown; holder?: string }
  /**
   * `sentAt` (acquired, renewed): the clock's monotonic `now()` when the successful write was sent.
   * Every safety deadline counts from it: we stop leading at `sentAt + renewDeadline`, and nobody else
   * may take over before `sentAt + leaseDuration` (whole seconds, as followers see it).
   */
  | { type: "acquired"; lock: string; term: number; record: LeaderElectionRecord; sentAt: number }
  | { type: "renewed"; lock: string; latencyMs: number; slowPath: boolean; sentAt: number }
  | { type: "renew_failed"; lock: string; error: unknown; deadlineInMs: number }
  | { type: "lost"; lock: string; reason: LostReason; holder?: string }
  | { type: "work_overran"; lock: string }
  | { type: "released"; lock: string }
  | { type: "release_failed"; lock: string; error: unknown }
  | { type: "new_leader"; lock: string; identity: string }
  /**
   * A lock call was given up when its signal aborted (leadership ended, the run was cancelled, the
   * release timed out): nothing waited for it. Frequent ones mean the backend ignores abort signals.
   */
  | { type: "call_abandoned"; lock: string; op: "get" | "create" | "update"; phase: "acquire" | "renew" | "release"; reason: unknown }
  /**
   * The record names our identity but this process did not write it: another live process uses the
   * same identity, or a predecessor of ours was killed a moment ago and its work may still run. It is
   * treated as a foreign holder until unchanged for its lease duration (`waitMs` from now, if unchanged).
   * Reported once per distinct record.
   */
  | { type: "identity_in_use"; lock: string; identity: string; waitMs: number }
  /**
   * The record was deleted. A leader (`leading`) re-creates it at once with its term; a candidate that
   * had seen it waits `recreateInMs` (a lease duration from the deletion) and re-creates it with the
   * highest term it has seen + 1. Reported once per deletion.
   */
  | { type: "lease_deleted"; lock: string; leading: boolean; recreateInMs: number }
  | { type: "callback_error"; lock: string; callback: "onStartedLeading" | "onNewLeader" | "onStoppedLeading"; error: unknown };

/**
 * Why leadership ended. `handover`: the record names another `preferredHolder` (a hand-over request,
 * e.g. `leader-run step-down`); leadership ends as on cancel, and the lease is released once the work
 * has stopped.
 */
export type LostReason = "deadline" | "foreign_holder" | "cancelled" | "handover";
