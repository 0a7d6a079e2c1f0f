/**
 * The lock record, field for field client-go's `resourcelock.LeaderElectionRecord`.
 *
 * Timestamps are `Date`s; each backend serialises them in its own wire format (the Lease API wants
 * MicroTime, the file and Redis backends keep milliseconds). They are informational only: expiry is
 * decided from the local monotonic clock (see elector.ts), never by comparing these with local time.
 */
export interface LeaderElectionRecord {
  /** `""` means nobody holds the lease and anyone may take it at once. */
  holderIdentity: string;
  /** Whole seconds, truncated like Go's `int(LD / time.Second)`. */
  leaseDurationSeconds: number;
  acquireTime: Date | null;
  renewTime: Date | null;
  /** Incremented on every acquisition; leader-run hands it to the child as the fencing token. */
  leaderTransitions: number;
  /** Coordinated leader election (alpha in client-go); preserved by backends that store it. */
  strategy?: string;
  preferredHolder?: string;
}

export function emptyRecord(): LeaderElectionRecord {
  return { holderIdentity: "", leaseDurationSeconds: 0, acquireTime: null, renewTime: null, leaderTransitions: 0 };
}

/**
 * JSON of a record with client-go's field names and order, timestamps in RFC 3339. `fractionDigits`
 * chooses the precision: 0 is `metav1.Time` (what client-go compares as raw bytes), 6 is `MicroTime`.
 */
export function recordToJSON(record: LeaderElectionRecord, fractionDigits = 3): Record<string, unknown> {
  const json: Record<string, unknown> = {
    holderIdentity: record.holderIdentity,
    leaseDurationSeconds: record.leaseDurationSeconds,
    acquireTime: formatTime(record.acquireTime, fractionDigits),
    renewTime: formatTime(record.renewTime, fractionDigits),
    leaderTransitions: record.leaderTransitions,
  };
  if (record.strategy) json.strategy = record.strategy;
  if (record.preferredHolder) json.preferredHolder = record.preferredHolder;
  return json;
}

/** RFC 3339 in UTC with exactly `fractionDigits` digits (0 to 9; digits past milliseconds are zeros). */
export function formatTime(date: Date | null, fractionDigits = 3): string | null {
  if (date === null) return null;
  const iso = date.toISOString(); // 2024-05-01T12:00:00.123Z
  const base = iso.slice(0, 19);
  if (fractionDigits <= 0) return `${base}Z`;
  const frac = (iso.slice(20, 23) + "000000").slice(0, fractionDigits);
  return `${base}.${frac}Z`;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/;

/** Parses RFC 3339 (any fraction length, any offset); throws a TypeError naming the bad value. */
export function parseTime(value: unknown, field = "time"): Date | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== "string" || !RFC3339.test(value)) {
    throw new TypeError(`${field} must be an RFC 3339 timestamp, got ${JSON.stringify(value)}`);
  }
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new TypeError(`${field} is not a valid time: ${JSON.stringify(value)}`);
  return date;
}

/** Validates and converts parsed JSON (client-go field names) into a record; throws a TypeError. */
export function recordFromJSON(json: unknown): LeaderElectionRecord {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new TypeError("lease record must be a JSON object");
  }
  const o = json as Record<string, unknown>;
  const str = (k: string): string => {
    const v = o[k];
    if (v === undefined || v === null) return "";
    if (typeof v !== "string") throw new TypeError(`${k} must be a string, got ${JSON.stringify(v)}`);
    return v;
  };
  const int = (k: string): number => {
    const v = o[k];
    if (v === undefined || v === null) return 0;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw new TypeError(`${k} must be a non-negative integer, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const record: LeaderElectionRecord = {
    holderIdentity: str("holderIdentity"),
    leaseDurationSeconds: int("leaseDurationSeconds"),
    acquireTime: parseTime(o.acquireTime, "acquireTime"),
    renewTime: parseTime(o.renewTime, "renewTime"),
    leaderTransitions: int("leaderTransitions"),
  };
  const strategy = str("strategy");
  const preferredHolder = str("preferredHolder");
  if (strategy) record.strategy = strategy;
  if (preferredHolder) record.preferredHolder = preferredHolder;
  return record;
}
