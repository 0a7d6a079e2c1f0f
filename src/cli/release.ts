import { ConflictError } from "../election/lock.js";
import type { LeaderElectionRecord } from "../election/record.js";
import { ExitCode, NotAcquiredError, UnavailableError, UsageError } from "./errors.js";
import type { LogSink } from "./log.js";
import type { ReleaseOptions } from "./options.js";
import { openTargetLock, readRecord, withTimeout } from "./status.js";

/**
 * `leader-run release`: writes client-go's released record (`holderIdentity ""`,
 * `leaseDurationSeconds 1`, acquire and renew time now, transitions kept) with compare-and-swap, only
 * when the freshly read holder is `--identity`, or whoever it is with `--force`. A concurrent write
 * makes the CAS fail; we re-read and decide again, a few times.
 */

const ATTEMPTS = 5;

/** `release` refused: someone else holds the lease. Exit 75. */
class HeldByOtherError extends NotAcquiredError {
  constructor(
    message: string,
    readonly holder: string,
  ) {
    super(message);
  }
}

export interface ReleaseResult {
  lease: string;
  location: string;
  released: boolean;
  /** The holder before, null if none. */
  previousHolder: string | null;
  term: number | null;
}

export function releasedRecord(previous: LeaderElectionRecord, now: Date): LeaderElectionRecord {
  return {
    holderIdentity: "",
    leaseDurationSeconds: 1,
    acquireTime: now,
    renewTime: now,
    leaderTransitions: previous.leaderTransitions,
  };
}

/** Renewed within its lease duration, by this host's clock. */
function isLive(record: LeaderElectionRecord, now: Date): boolean {
  return record.renewTime !== null && record.renewTime.getTime() + record.leaseDurationSeconds * 1000 > now.getTime();
}

export async function runRelease(
  options: ReleaseOptions,
  stdout: LogSink,
  now: () => Date = () => new Date(),
  warn: (message: string) => void = () => undefined,
): Promise<number> {
  if (!options.force && options.identityDerived) {
    throw new UsageError(
      "release needs --identity <holder> (the identity leader-run logged, or `leader-run status` shows), or --force to release whoever holds it",
    );
  }
  const lock = await openTargetLock(options);
  try {
    const result = await withTimeout(`releasing lease ${options.name}`, async (signal) => {
      for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
        const record = await readRecord(lock, signal);
        const base = { lease: options.name, location: lock.describe() };
        if (record === null || record.holderIdentity === "") {
          return { ...base, released: false, previousHolder: null, term: record?.leaderTransitions ?? null };
        }
        if (!options.force && record.holderIdentity !== options.identity) {
          throw new HeldByOtherError(
            `lease ${options.name} is held by ${record.holderIdentity}, not ${options.identity}; nothing released (--force releases it anyway)`,
            record.holderIdentity,
          );
        }
        const live = isLive(record, now());
        if (!options.force && live) {
          // Releasing a live holder's lease lets a standby start while that holder's command still runs
          // (it notices only at its next renewal): the overlap leader-run exists to prevent.
          throw new HeldByOtherError(
            `lease ${options.name} is held by ${record.holderIdentity}, which is still renewing it: releasing it would let a standby start before that holder's command is stopped; use leader-run step-down to hand over cleanly, or --force if it is gone for good`,
            record.holderIdentity,
          );
        }
        if (live) {
          warn(
            `forcing the release of a live lease held by ${record.holderIdentity}: if its leader-run still runs, a standby may start before that command is stopped (for up to the holder's renew deadline plus kill grace)`,
          );
        }
        try {
          await lock.update(releasedRecord(record, now()), signal);
        } catch (e) {
          if (e instanceof ConflictError) continue;
          throw e;
        }
        return { ...base, released: true, previousHolder: record.holderIdentity, term: record.leaderTransitions };
      }
      throw new UnavailableError(`lease ${options.name} kept changing while releasing it (${ATTEMPTS} attempts); try again`);
    });
    stdout.write(options.output === "json" ? `${JSON.stringify(result)}\n` : releaseText(result));
    return ExitCode.OK;
  } catch (e) {
    // Asked for JSON, a refusal is a result too: say so on stdout, and still exit with its code.
    if (options.output === "json" && e instanceof HeldByOtherError) {
      const refused = { lease: options.name, location: lock.describe(), released: false, refused: true, holder: e.holder, error: e.message };
      stdout.write(`${JSON.stringify(refused)}\n`);
      return e.exitCode;
    }
    throw e;
  } finally {
    await lock.close?.();
  }
}

function releaseText(r: ReleaseResult): string {
  if (!r.released) return `lease ${r.lease} is not held; nothing to release\n`;
  return `released lease ${r.lease} (held by ${r.previousHolder ?? "-"}, term ${r.term ?? "-"})\n`;
}
