import { CorruptRecordError } from "../../election/lock.js";
import { formatTime, parseTime, recordToJSON, type LeaderElectionRecord } from "../../election/record.js";

/**
 * The record ↔ `coordination.k8s.io/v1` LeaseSpec mapping, field for field as client-go's LeaseLock
 * does it (`LeaderElectionRecordToLeaseSpec` / `LeaseSpecToLeaderElectionRecord`), so a Go program with
 * `resourcelock.LeaseLock` on the same Lease reads what we write and we read what it writes.
 */

/** LeaseSpec as JSON on the wire. Times are MicroTime strings (`2006-01-02T15:04:05.000000Z`). */
export interface LeaseSpecJSON {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number | null;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number | null;
  strategy?: string | null;
  preferredHolder?: string | null;
}

/**
 * client-go's `LeaderElectionRecordToLeaseSpec`: holderIdentity, leaseDurationSeconds, both times and
 * leaseTransitions are always written (a released lease says `holderIdentity: ""`, and a zero time is
 * `null`, as Go marshals a pointer to a zero MicroTime); strategy and preferredHolder only when set.
 */
export function recordToLeaseSpec(record: LeaderElectionRecord): LeaseSpecJSON {
  const spec: LeaseSpecJSON = {
    holderIdentity: record.holderIdentity,
    leaseDurationSeconds: record.leaseDurationSeconds,
    acquireTime: formatMicroTime(record.acquireTime),
    renewTime: formatMicroTime(record.renewTime),
    leaseTransitions: record.leaderTransitions,
  };
  if (record.strategy) spec.strategy = record.strategy;
  if (record.preferredHolder) spec.preferredHolder = record.preferredHolder;
  return spec;
}

/**
 * client-go's `LeaseSpecToLeaderElectionRecord`: an absent field reads as its zero value. Times may
 * arrive as strings (what the client library hands over for MicroTime) or Dates.
 * @throws CorruptRecordError when a field has a type or value no API server would store.
 */
export function leaseSpecToRecord(spec: LeaseSpecJSON | undefined | null): LeaderElectionRecord {
  const s = spec ?? {};
  const str = (field: keyof LeaseSpecJSON): string => {
    const v: unknown = s[field];
    if (v === undefined || v === null) return "";
    if (typeof v !== "string") throw new CorruptRecordError(`Lease spec.${field} is not a string: ${JSON.stringify(v)}`);
    return v;
  };
  const int = (field: keyof LeaseSpecJSON): number => {
    const v: unknown = s[field];
    if (v === undefined || v === null) return 0;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw new CorruptRecordError(`Lease spec.${field} is not a non-negative integer: ${JSON.stringify(v)}`);
    }
    return v;
  };
  const time = (field: "acquireTime" | "renewTime"): Date | null => {
    const v: unknown = s[field];
    if (v instanceof Date) {
      if (Number.isNaN(v.getTime())) throw new CorruptRecordError(`Lease spec.${field} is not a valid time`);
      return new Date(v.getTime());
    }
    try {
      return parseTime(v, `Lease spec.${field}`);
    } catch (error) {
      throw new CorruptRecordError((error as Error).message, { cause: error });
    }
  };
  const record: LeaderElectionRecord = {
    holderIdentity: str("holderIdentity"),
    leaseDurationSeconds: int("leaseDurationSeconds"),
    acquireTime: time("acquireTime"),
    renewTime: time("renewTime"),
    leaderTransitions: int("leaseTransitions"),
  };
  const strategy = str("strategy");
  const preferredHolder = str("preferredHolder");
  if (strategy) record.strategy = strategy;
  if (preferredHolder) record.preferredHolder = preferredHolder;
  return record;
}

/**
 * MicroTime as the API server accepts it: UTC, exactly six fraction digits. A Date holds milliseconds,
 * so the last three digits are zeros. (A plain `Date#toISOString()` has three digits and is refused.)
 */
export function formatMicroTime(date: Date | null): string | null {
  return formatTime(date, 6);
}

/**
 * The `raw` the elector compares to notice that the lease changed.
 *
 * client-go returns the record as JSON with `metav1.Time`, i.e. whole seconds: two renewals within one
 * wall-clock second look identical, so a follower's observed time does not move and, with sub-second
 * retry periods, it could take over up to a second early. Ours is finer and cannot miss a write:
 * the Lease's resourceVersion (the server changes it on every write that changes anything) plus the
 * record with MicroTime timestamps. A renewal writes a new renewTime, so it always changes both, and
 * every follower sees every renewal as a change and restarts its lease-duration wait from it. A write
 * to the Lease's metadata alone (a label) also counts as a change: that only makes followers wait
 * longer, never shorter, so it is safe.
 */
export function leaseRaw(record: LeaderElectionRecord, resourceVersion: string | undefined): string {
  return JSON.stringify({ resourceVersion: resourceVersion ?? "", ...recordToJSON(record, 6) });
}
