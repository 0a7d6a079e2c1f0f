import { setTimeout as delay } from "node:timers/promises";
import { ConflictError } from "../election/lock.js";
import type { ResourceLock } from "../election/lock.js";
import type { LeaderElectionRecord } from "../election/record.js";
import { ExitCode, NotAcquiredError, UnavailableError, UsageError } from "./errors.js";
import type { LogSink } from "./log.js";
import type { StepDownOptions } from "./options.js";
import { openTargetLock, readRecord, withTimeout } from "./status.js";

/**
 * `leader-run step-down`: a graceful hand-over. Writes the holder's own record back with
 * `preferredHolder` set to our identity (compare-and-swap, so nothing else changes); the leader-run
 * holding the lease sees it on its next renewal read, stops its command as on SIGTERM and releases
 * (src/election/elector.ts, reason "handover"). Standbys observed the record change, so none of them
 * starts before that release. Every backend stores preferredHolder (the Kubernetes Lease has it as
 * `spec.preferredHolder`; the others keep the JSON record), and a client-go peer ignores it.
 */

const WRITE_ATTEMPTS = 5;
const POLL_MS = 200;
/** After the release, how long to wait for a standby before reporting that nobody took over. */
const TAKEOVER_GRACE_MS = 5_000;

export interface StepDownResult {
  lease: string;
  location: string;
  /** The holder asked to hand over; null when nobody held the lease. */
  previousHolder: string | null;
  /** Who leads now; null when nobody (released and not taken yet). */
  holder: string | null;
  term: number | null;
  handedOver: boolean;
}

export async function runStepDown(options: StepDownOptions, stdout: LogSink, now: () => Date = () => new Date()): Promise<number> {
  const lock = await openTargetLock(options);
  try {
    const requested = await withTimeout(`asking the holder of lease ${options.name} to hand over`, (signal) => request(lock, options, now, signal));
    const base = { lease: options.name, location: lock.describe() };
    if (requested === null) {
      const result: StepDownResult = { ...base, previousHolder: null, holder: null, term: null, handedOver: false };
      stdout.write(options.output === "json" ? `${JSON.stringify(result)}\n` : `lease ${options.name} is not held; nothing to hand over\n`);
      return ExitCode.NO_HOLDER;
    }
    const result = await waitForHandover(lock, requested, base);
    if (!result.handedOver) {
      const message = `${requested.holderIdentity} did not hand over lease ${options.name} within ${Math.round(timeoutFor(requested) / 1000)}s (a holder that is not leader-run, e.g. a client-go peer, ignores the request)`;
      if (options.output === "json") {
        stdout.write(`${JSON.stringify({ ...result, error: message })}\n`);
        return ExitCode.NOT_ACQUIRED;
      }
      throw new NotAcquiredError(message);
    }
    stdout.write(options.output === "json" ? `${JSON.stringify(result)}\n` : stepDownText(result));
    return ExitCode.OK;
  } finally {
    await lock.close?.();
  }
}

/** Writes the request; returns the record as it was (null when nobody holds the lease). */
async function request(lock: ResourceLock, options: StepDownOptions, now: () => Date, signal: AbortSignal): Promise<LeaderElectionRecord | null> {
  for (let attempt = 0; attempt < WRITE_ATTEMPTS; attempt++) {
    const record = await readRecord(lock, signal);
    if (record === null || record.holderIdentity === "") return null;
    const expires = (record.renewTime?.getTime() ?? 0) + record.leaseDurationSeconds * 1000;
    if (expires <= now().getTime()) {
      throw new NotAcquiredError(
        `lease ${options.name} is held by ${record.holderIdentity}, which no longer renews it; nobody can hand over: the next candidate takes it when it expires (leader-run release --force clears it now)`,
      );
    }
    if (record.holderIdentity === options.identity) {
      throw new UsageError(`--identity ${options.identity} is the holder itself; step-down asks it on behalf of another identity: leave --identity out`);
    }
    try {
      await lock.update({ ...record, preferredHolder: options.identity }, signal);
      return record;
    } catch (e) {
      if (e instanceof ConflictError) continue;
      throw e;
    }
  }
  throw new UnavailableError(`lease ${options.name} kept changing while asking for a hand-over (${WRITE_ATTEMPTS} attempts); try again`);
}

/** The holder sees the request within a retry period, and must be done within its lease duration. */
function timeoutFor(record: LeaderElectionRecord): number {
  return 2 * record.leaseDurationSeconds * 1000 + 10_000;
}

async function waitForHandover(lock: ResourceLock, before: LeaderElectionRecord, base: { lease: string; location: string }): Promise<StepDownResult> {
  const deadline = performance.now() + timeoutFor(before);
  let releasedAt: number | undefined;
  let last: LeaderElectionRecord | null = before;
  while (performance.now() < deadline) {
    try {
      last = await withTimeout(`reading lease ${base.lease}`, (signal) => readRecord(lock, signal));
    } catch {
      // A passing outage: keep waiting until the deadline.
    }
    const holder = last?.holderIdentity ?? "";
    if (holder !== "" && holder !== before.holderIdentity) {
      return { ...base, previousHolder: before.holderIdentity, holder, term: last?.leaderTransitions ?? null, handedOver: true };
    }
    if (holder === "") {
      releasedAt ??= performance.now();
      if (performance.now() - releasedAt >= TAKEOVER_GRACE_MS) {
        return { ...base, previousHolder: before.holderIdentity, holder: null, term: last?.leaderTransitions ?? null, handedOver: true };
      }
    } else if (last !== null && last.preferredHolder === undefined) {
      // The holder renewed over the request: it does not understand it.
      break;
    }
    await delay(POLL_MS);
  }
  return { ...base, previousHolder: before.holderIdentity, holder: last?.holderIdentity || null, term: last?.leaderTransitions ?? null, handedOver: false };
}

function stepDownText(r: StepDownResult): string {
  if (r.holder === null) return `${r.previousHolder ?? "-"} handed lease ${r.lease} over and released it; no standby has taken it yet\n`;
  return `${r.previousHolder ?? "-"} handed lease ${r.lease} over; ${r.holder} leads now (term ${r.term ?? "-"})\n`;
}
