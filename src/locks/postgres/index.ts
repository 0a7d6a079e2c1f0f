import { plainBackend, type LockCapabilities } from "../backend.js";
import {
  AlreadyExistsError,
  ConflictError,
  CorruptRecordError,
  LockError,
  NotFoundError,
  PermanentLockError,
  type ResourceLock,
  type WatchHealth,
  type WatchedRecord,
} from "../../election/lock.js";
import { recordToJSON, type LeaderElectionRecord } from "../../election/record.js";
import {
  DEFAULT_TABLE,
  PostgresConfigError,
  describeTarget,
  parseTableName,
  qualified,
  resolvePostgresTarget,
  type PostgresTarget,
  type TableName,
} from "./config.js";
import { PgSession, PostgresUnavailableError } from "./connection.js";
import { Notifier, type NotifyMode } from "./notify.js";
import { channelName, createTablesSql, statements, type NotifiedRow, type Statements } from "./sql.js";

export { PostgresConfigError, isPostgresUrl, parseTableName } from "./config.js";
export { PostgresUnavailableError } from "./connection.js";
export { createTablesSql, grantSql } from "./sql.js";

/**
 * The PostgreSQL lock (`--lock postgres://…`): client-go's LeaderElectionRecord as one row per lease
 * in `leader_run_leases` (or `--pg-table`), with the fencing counter in `<table>_terms`. See sql.ts for
 * the statements and docs/postgres.md for the guarantees. Rows never expire by themselves: expiry is
 * the elector's local-clock rule, as with the Kubernetes Lease.
 */
export const postgresCapabilities: LockCapabilities = {
  expiresByItself: false,
  notifies: true,
  seesHolderProcesses: false,
  leaseDurationResolutionMs: 1000,
  /** timestamptz keeps microseconds: a record's millisecond times come back exactly. */
  timeResolutionMs: 1,
  /** `version` is part of `raw`. */
  rawChangesOnEveryWrite: true,
  announcesRenewals: true,
  termSurvivesDelete: true,
};

export const postgresBackend = plainBackend("postgres", postgresCapabilities, (spec, options) => {
  const { name, identity, leaseDurationMs, renewDeadlineMs, env, pgTable, onInfo, onWarning } = options;
  return openPostgresLock(spec.url, { name, identity, leaseDurationMs, renewDeadlineMs, env, table: pgTable, onInfo, onWarning });
});

/** `LEADER_RUN_PG_TABLE`: the table when the caller names none. */
export const PG_TABLE_ENV = "LEADER_RUN_PG_TABLE";

export interface PostgresLockOptions {
  name: string;
  identity: string;
  leaseDurationMs: number;
  /** Every statement (and connecting) is bounded well inside it. */
  renewDeadlineMs: number;
  /** `[schema.]table`; default $LEADER_RUN_PG_TABLE, then `leader_run_leases` in the default schema. */
  table?: string;
  /** Default: half the renew deadline. Must be below it. */
  statementTimeoutMs?: number;
  /**
   * `"auto"` (default): LISTEN, and poll instead when a probe notification does not come back (e.g.
   * behind a transaction-mode pooler). `"poll"`: never LISTEN.
   */
  notify?: "auto" | "poll";
  /** How often `watch` re-reads the row when notifications are unavailable. Default 1 s. */
  pollIntervalMs?: number;
  /** How long `openPostgresLock` waits for the first answer before returning anyway. Default 2 s. */
  connectWaitMs?: number;
  /** Where libpq variables (PGHOST, PGPASSWORD, PGSSLMODE, …) are read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Which hand-over signal is in use (notifications or polling), for the caller's log. */
  onInfo?: (message: string) => void;
  /** Non-fatal problems (notifications unavailable), for the caller's log. */
  onWarning?: (message: string) => void;
}

/** What we last read or wrote: the expectation of the next compare-and-swap. */
interface Snapshot {
  /** null: the row was absent. */
  version: string | null;
  record: LeaderElectionRecord;
}

type Row = Record<string, unknown>;

export class PostgresLock implements ResourceLock {
  readonly table: TableName;
  private readonly sql: Statements;
  private readonly session: PgSession;
  private readonly notifier: Notifier;
  private snapshot: Snapshot | undefined;
  private written: LeaderElectionRecord | undefined;
  private tablesReady = false;
  private closed = false;

  constructor(
    private readonly target: PostgresTarget,
    private readonly options: {
      name: string;
      identity: string;
      table: TableName;
      timeoutMs: number;
      notify: "auto" | "poll";
      pollIntervalMs: number;
      onInfo?: ((message: string) => void) | undefined;
      onWarning?: ((message: string) => void) | undefined;
    },
  ) {
    this.table = options.table;
    this.sql = statements(options.table);
    this.session = new PgSession(target, options.timeoutMs, "lock");
    this.notifier = new Notifier({
      target,
      timeoutMs: options.timeoutMs,
      channel: channelName(options.table),
      lease: options.name,
      mode: options.notify,
      pollIntervalMs: options.pollIntervalMs,
      probe: (channel, payload) => this.session.query("SELECT", "pg_notify", this.sql.probe, [channel, payload]).then(() => undefined),
      poll: () => this.version(),
      decode: (payload) => this.notifiedRecord(payload),
      onMode: (mode: NotifyMode, why?: string) => {
        if (mode === "notify") this.options.onInfo?.(`hand-over by LISTEN/NOTIFY on channel "${channelName(options.table)}"`);
        else this.options.onWarning?.(`notifications unavailable${why ? ` (${why})` : ""}; polling ${this.tableName()} every ${options.pollIntervalMs}ms`);
      },
    });
  }

  identity(): string {
    return this.options.identity;
  }

  describe(): string {
    return `${this.tableName()}/${this.options.name} on ${describeTarget(this.target)}`;
  }

  recordEvent(): void {
    // No event log in PostgreSQL; leader-run's own log lines carry the same information.
  }

  /** The record as stored by our last successful write (the term is the database's). */
  lastWrittenRecord(): LeaderElectionRecord | undefined {
    return this.written === undefined ? undefined : { ...this.written };
  }

  fencingToken(): number | undefined {
    return this.written?.leaderTransitions;
  }

  async get(signal?: AbortSignal): Promise<{ record: LeaderElectionRecord; raw: string }> {
    const row = await this.readRow(signal);
    if (row.version === null) {
      if (row.term === null) {
        this.snapshot = undefined;
        throw new NotFoundError(`lease ${this.describe()} does not exist`);
      }
      // Deleted by hand: a released lease whose term is remembered, so the next one is higher.
      const record: LeaderElectionRecord = {
        holderIdentity: "",
        leaseDurationSeconds: 0,
        acquireTime: null,
        renewTime: null,
        leaderTransitions: this.number(row.term, "term"),
      };
      this.snapshot = { version: null, record };
      return { record: { ...record }, raw: JSON.stringify({ ...recordToJSON(record, 6), version: null }) };
    }
    const snapshot = this.decode(row);
    this.snapshot = snapshot;
    return { record: { ...snapshot.record }, raw: rawOf(snapshot) };
  }

  async create(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    const stored = await this.write("insert", record, null, record.leaderTransitions, "holder", signal);
    if (stored === undefined) throw new AlreadyExistsError(`lease ${this.describe()} already exists`);
  }

  async update(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    const seen = this.snapshot;
    if (seen === undefined) {
      throw new ConflictError(`lease ${this.describe()}: update without a prior get or create (nothing to compare with)`);
    }
    const current = seen.record;
    const release = record.holderIdentity === "";
    const acquire =
      !release &&
      (seen.version === null || current.holderIdentity !== record.holderIdentity || record.leaderTransitions > current.leaderTransitions);
    const term = acquire ? Math.max(record.leaderTransitions, current.leaderTransitions + 1) : null;
    // Others are woken when the holder changes (acquisition or release); a renewal sends the row, which
    // they observe without reading.
    const notify = release || acquire ? "holder" : "row";
    const stored =
      seen.version === null
        ? await this.write("insert", record, seen, term ?? current.leaderTransitions, notify, signal)
        : await this.write("update", record, seen, term, notify, signal);
    if (stored === undefined) throw new ConflictError(`lease ${this.describe()} changed since it was last read`);
  }

  /**
   * Wakes `onChange` on a notification for this lease, on reconnects, or when polling sees a change; a
   * renewal's notification comes with the record, as `get` would return it. `onHealth` is `"connected"`
   * while notifications are proven to arrive (LISTEN up and the probe came back).
   */
  watch(onChange: (seen?: WatchedRecord) => void, signal: AbortSignal, onHealth?: (health: WatchHealth) => void): void {
    if (signal.aborted || this.closed) return;
    this.notifier.add(onChange, signal, onHealth);
  }

  /** A renewal's payload as the record and raw `get` would return; undefined if it is not one. */
  private notifiedRecord(payload: unknown): WatchedRecord | undefined {
    const row = payload as Partial<NotifiedRow> | null;
    if (typeof row !== "object" || row === null || row.lease !== this.options.name) return undefined;
    const time = (v: unknown): Date | null | undefined => (v === null ? null : typeof v === "string" ? new Date(Date.parse(v)) : undefined);
    try {
      const snapshot = this.decode({ ...row, acquire_time: time(row.acquire_time), renew_time: time(row.renew_time) });
      if (snapshot.record.holderIdentity === "") return undefined;
      return { record: snapshot.record, raw: rawOf(snapshot) };
    } catch {
      return undefined;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.notifier.close(), this.session.close()]);
  }

  /**
   * Connects and reads once, creating the tables if missing, so bad credentials, a missing database or
   * permission fail here (exit 69) rather than at the first renewal. An unreachable or slow server is
   * not an error: the elector campaigns and reports each failed attempt.
   */
  async connect(waitMs: number): Promise<void> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new PostgresUnavailableError("connect wait over")), waitMs);
    try {
      await this.readRow(controller.signal);
    } catch (error) {
      if (error instanceof PermanentLockError) throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private tableName(): string {
    return qualified(this.table);
  }

  private async readRow(signal?: AbortSignal): Promise<Row> {
    await this.ensureTables(signal);
    const result = await this.run("SELECT", this.sql.read, [this.options.name], signal);
    const row = result.rows[0];
    if (row === undefined) throw new LockError(`PostgreSQL at ${this.session.where} returned no row for ${this.describe()}`);
    return row;
  }

  private async version(): Promise<string> {
    // Holder and term only: renewals must not wake the standbys.
    const row = await this.readRow();
    return JSON.stringify([row.holder_identity, row.leader_transitions, row.term]);
  }

  /** Creates the tables with the documented SQL the first time they are found missing. */
  private async ensureTables(signal?: AbortSignal): Promise<void> {
    if (this.tablesReady) return;
    const leases = this.tableName();
    const terms = qualified(this.table, "_terms");
    const found = await this.session.query("SELECT", leases, this.sql.exists, [leases, terms], signal);
    const row = found.rows[0] as { leases?: boolean; terms?: boolean } | undefined;
    if (row?.leases !== true || row.terms !== true) {
      try {
        await this.session.query("CREATE TABLE", `${leases} and ${terms}`, createTablesSql(this.table), [], signal);
      } catch (error) {
        if (error instanceof PermanentLockError && (error.cause as { code?: unknown } | undefined)?.code === "42501") {
          throw new PermanentLockError(
            `the lease tables ${leases} and ${terms} do not exist on ${this.session.where} and role "${this.target.user}" may not create them: ` +
              `have the owner run the SQL in docs/postgres.md (${error.cause instanceof Error ? error.cause.message : error.message})`,
            { cause: error },
          );
        }
        // Two processes creating at once: one of them loses a catalog race (23505); the tables exist.
        if (!(error instanceof Error && (error as { code?: unknown }).code === "23505")) throw error;
      }
    }
    this.tablesReady = true;
  }

  private async write(
    kind: "insert" | "update",
    record: LeaderElectionRecord,
    seen: Snapshot | null,
    term: number | null,
    notify: "holder" | "row",
    signal?: AbortSignal,
  ): Promise<Snapshot | undefined> {
    await this.ensureTables(signal);
    const values = [
      this.options.name,
      seen?.version ?? null,
      seen === null || seen.version === null ? null : String(seen.record.leaderTransitions),
      record.holderIdentity,
      record.leaseDurationSeconds,
      record.acquireTime?.toISOString() ?? null,
      record.renewTime?.toISOString() ?? null,
      record.strategy ?? null,
      record.preferredHolder ?? null,
      term === null ? null : String(term),
      channelName(this.table),
      notify === "row",
    ];
    const result = await this.run(kind === "insert" ? "INSERT" : "UPDATE", kind === "insert" ? this.sql.insert : this.sql.update, values, signal);
    const row = result.rows[0];
    if (row === undefined) return undefined;
    const stored = this.decode(row);
    this.snapshot = stored;
    this.written = stored.record;
    return stored;
  }

  private async run(verb: "SELECT" | "INSERT" | "UPDATE", text: string, values: unknown[], signal?: AbortSignal) {
    try {
      return await this.session.query(verb, this.tableName(), text, values, signal);
    } catch (error) {
      // Somebody dropped the tables: create them again on the next call.
      if (error instanceof Error && (error as { code?: unknown }).code === "42P01") {
        this.tablesReady = false;
        throw new PostgresUnavailableError(`table ${this.tableName()} on ${this.session.where} is missing; it will be created again`, { cause: error });
      }
      throw error;
    }
  }

  private decode(row: Row): Snapshot {
    try {
      const text = (k: string): string => {
        const v = row[k];
        if (v === null || v === undefined) return "";
        if (typeof v !== "string") throw new TypeError(`${k} is not text`);
        return v;
      };
      const time = (k: string): Date | null => {
        const v = row[k];
        if (v === null || v === undefined) return null;
        if (!(v instanceof Date) || Number.isNaN(v.getTime())) throw new TypeError(`${k} is not a timestamp`);
        return v;
      };
      const version = row.version;
      if (typeof version !== "string" || !/^\d{1,18}$/.test(version)) throw new TypeError("version is not a positive number");
      const record: LeaderElectionRecord = {
        holderIdentity: text("holder_identity"),
        leaseDurationSeconds: this.number(row.lease_duration_seconds, "lease_duration_seconds"),
        acquireTime: time("acquire_time"),
        renewTime: time("renew_time"),
        leaderTransitions: this.number(row.leader_transitions, "leader_transitions"),
      };
      const strategy = text("strategy");
      const preferredHolder = text("preferred_holder");
      if (strategy) record.strategy = strategy;
      if (preferredHolder) record.preferredHolder = preferredHolder;
      return { version, record };
    } catch (error) {
      if (error instanceof CorruptRecordError) throw error;
      throw new CorruptRecordError(`lease ${this.describe()} does not hold a leader-run record (${(error as Error).message}); if nothing else uses this row, delete it`, {
        cause: error,
      });
    }
  }

  private number(value: unknown, field: string): number {
    const n = typeof value === "number" ? value : typeof value === "string" && /^\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 0) {
      throw new CorruptRecordError(`lease ${this.describe()}: ${field} holds ${JSON.stringify(value)}, not a non-negative integer`);
    }
    return n;
  }
}

function rawOf(snapshot: Snapshot): string {
  return JSON.stringify({ ...recordToJSON(snapshot.record, 6), version: snapshot.version });
}

/**
 * Opens the PostgreSQL lock named by `url` (plus the libpq environment). Throws `PostgresConfigError`
 * for bad settings (exit 64) and `PermanentLockError` for rejected credentials, a missing database or
 * missing rights (exit 69). An unreachable server does not throw: calls fail with
 * `PostgresUnavailableError` until it is back.
 */
export async function openPostgresLock(url: string, options: PostgresLockOptions): Promise<PostgresLock> {
  const env = options.env ?? process.env;
  const target = resolvePostgresTarget(url, env);
  const tableText = options.table ?? (env[PG_TABLE_ENV] || undefined) ?? DEFAULT_TABLE;
  const table = parseTableName(tableText);
  if (options.name === "") throw new PostgresConfigError("the PostgreSQL lock needs a non-empty lease name");
  if (options.identity === "") throw new PostgresConfigError("the PostgreSQL lock needs a non-empty identity");
  const rd = options.renewDeadlineMs;
  if (!(options.leaseDurationMs > 0) || !(rd > 0)) {
    throw new PostgresConfigError("the PostgreSQL lock needs a positive leaseDurationMs and renewDeadlineMs");
  }
  const timeoutMs = options.statementTimeoutMs ?? Math.max(1, Math.floor(rd / 2));
  if (!(timeoutMs > 0) || timeoutMs >= rd) {
    throw new PostgresConfigError(`the PostgreSQL statement timeout (${timeoutMs}ms) must be positive and below the renew deadline (${rd}ms)`);
  }
  const lock = new PostgresLock(target, {
    name: options.name,
    identity: options.identity,
    table,
    timeoutMs,
    notify: options.notify ?? "auto",
    pollIntervalMs: options.pollIntervalMs ?? 1000,
    onInfo: options.onInfo,
    onWarning: options.onWarning,
  });
  try {
    await lock.connect(options.connectWaitMs ?? 2000);
  } catch (error) {
    await lock.close();
    throw error;
  }
  return lock;
}
