import { qualified, type TableName } from "./config.js";

/**
 * Every statement the PostgreSQL lock runs. Each write is ONE statement, so it is atomic without an
 * explicit transaction (nothing is left open when a connection is abandoned mid-call), and it is a
 * compare-and-swap: it changes the row only if `version` and `leader_transitions` are still what we
 * read. Comparing the term too closes the ABA hole of a row deleted and re-created with version 1.
 *
 * The `<table>_terms` table remembers the last term of every lease and is never deleted by leader-run;
 * every acquisition stores max(remembered + 1, requested), so a fencing token never goes back, even
 * when somebody deletes the lease row.
 */

/** The DDL documented in docs/postgres.md, for a given table name. Run as one simple-protocol batch. */
export function createTablesSql(name: TableName): string {
  const leases = qualified(name);
  const terms = qualified(name, "_terms");
  return `CREATE TABLE IF NOT EXISTS ${leases} (
  name                   text PRIMARY KEY,
  holder_identity        text NOT NULL,
  lease_duration_seconds integer NOT NULL,
  acquire_time           timestamptz,
  renew_time             timestamptz,
  leader_transitions     bigint NOT NULL,
  strategy               text,
  preferred_holder       text,
  version                bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS ${terms} (
  name text PRIMARY KEY,
  term bigint NOT NULL
);`;
}

export function grantSql(name: TableName, role: string): string {
  return `GRANT SELECT, INSERT, UPDATE ON ${qualified(name)}, ${qualified(name, "_terms")} TO ${role};`;
}

export interface Statements {
  exists: string;
  read: string;
  update: string;
  insert: string;
  probe: string;
}

const COLUMNS = "holder_identity, lease_duration_seconds, acquire_time, renew_time, leader_transitions, strategy, preferred_holder, version";

/**
 * Parameters: $1 lease name.
 * Writes: $2 expected version, $3 expected term, $4 holder, $5 lease seconds, $6 acquire time,
 * $7 renew time, $8 strategy, $9 preferred holder, $10 new term wanted (acquisition; null = keep),
 * $11 notify channel (null = no notification), $12 true: the payload is the stored row as JSON (see
 * `NotifiedRow`; renewals, so watchers observe them without reading), otherwise the lease name.
 */
export function statements(name: TableName): Statements {
  const leases = qualified(name);
  const terms = qualified(name, "_terms");
  const nextTerm = `GREATEST(COALESCE((SELECT tt.term FROM ${terms} tt WHERE tt.name = $1::text), -1) + 1, $10::bigint)`;
  const remember = `INSERT INTO ${terms} AS tt (name, term) SELECT name, leader_transitions FROM w WHERE $10::bigint IS NOT NULL
    ON CONFLICT (name) DO UPDATE SET term = GREATEST(tt.term, EXCLUDED.term)`;
  const rowJson = `json_build_object('lease', $1::text, 'version', w.version::text, 'holder_identity', w.holder_identity,
    'lease_duration_seconds', w.lease_duration_seconds, 'acquire_time', w.acquire_time, 'renew_time', w.renew_time,
    'leader_transitions', w.leader_transitions::text, 'strategy', w.strategy, 'preferred_holder', w.preferred_holder)::text`;
  const notify = `CASE WHEN $11::text IS NOT NULL THEN (SELECT count(*) FROM pg_notify($11::text,
    CASE WHEN $12::boolean THEN ${rowJson} ELSE $1::text END)) END AS notified`;
  return {
    exists: `SELECT to_regclass($1::text) IS NOT NULL AS leases, to_regclass($2::text) IS NOT NULL AS terms`,
    read: `SELECT ${COLUMNS.split(", ")
      .map((c) => `l.${c}`)
      .join(", ")}, t.term
  FROM (SELECT $1::text AS name) k
  LEFT JOIN ${leases} l ON l.name = k.name
  LEFT JOIN ${terms} t ON t.name = k.name`,
    update: `WITH w AS (
  UPDATE ${leases} l SET holder_identity = $4::text, lease_duration_seconds = $5::integer,
    acquire_time = $6::timestamptz, renew_time = $7::timestamptz, strategy = $8::text, preferred_holder = $9::text,
    leader_transitions = CASE WHEN $10::bigint IS NULL THEN l.leader_transitions ELSE ${nextTerm} END,
    version = l.version + 1
  WHERE l.name = $1::text AND l.version = $2::bigint AND l.leader_transitions = $3::bigint
  RETURNING l.*
), r AS (${remember})
SELECT ${COLUMNS}, ${notify} FROM w`,
    // $2 and $3 are unused (the row must be absent) but keep the parameter list of `update`.
    insert: `WITH w AS (
  INSERT INTO ${leases} (name, ${COLUMNS})
  SELECT $1::text, $4::text, $5::integer, $6::timestamptz, $7::timestamptz,
    ${nextTerm.replace("$10::bigint)", "COALESCE($10::bigint, 0))")}, $8::text, $9::text, 1
  WHERE $2::bigint IS NULL AND $3::bigint IS NULL
  ON CONFLICT (name) DO NOTHING
  RETURNING *
), r AS (${remember.replace("WHERE $10::bigint IS NOT NULL", "")})
SELECT ${COLUMNS}, ${notify} FROM w`,
    probe: `SELECT pg_notify($1::text, $2::text)`,
  };
}

/**
 * A renewal's notification payload: the row as stored, times as JSON timestamps, the numbers that may
 * exceed 2^53 as text.
 */
export interface NotifiedRow {
  lease: string;
  version: string;
  holder_identity: string;
  lease_duration_seconds: number;
  acquire_time: string | null;
  renew_time: string | null;
  leader_transitions: string;
  strategy: string | null;
  preferred_holder: string | null;
}

/**
 * The channel of a lease table's notifications. The payload is the lease name (an acquisition or a
 * release: read it) or, for a renewal, the row as JSON (`NotifiedRow`).
 */
export function channelName(name: TableName): string {
  return qualified(name).slice(0, 63);
}
