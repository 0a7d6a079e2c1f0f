import pg from "pg";
import { LockError, PermanentLockError } from "../../election/lock.js";
import { describeTarget, readPassfile, type PostgresTarget } from "./config.js";

/** The server could not be reached or did not answer in time; the elector retries. */
export class PostgresUnavailableError extends LockError {}

/** What a statement was for, named in errors as the SQL verb users grant. */
export type Verb = "SELECT" | "INSERT" | "UPDATE" | "CREATE TABLE" | "LISTEN" | "CONNECT";

/**
 * One connection to the server with every call bounded: node-postgres has no per-query cancellation,
 * so a call that times out or is aborted destroys its socket (the server ends the backend, rolling the
 * statement back if it had not committed) and the next call reconnects, no sooner than a jittered
 * backoff after the last failed attempt. A blocked or frozen server can therefore never hold up a caller
 * longer than the timeout, nor `close()`.
 *
 * Server-side, `statement_timeout` and `lock_timeout` (set at connect, below the client timeout) make
 * the server give up first, so a statement abandoned by a slow network does not linger holding locks.
 */
export class PgSession {
  private client: pg.Client | undefined;
  private connecting: Promise<pg.Client> | undefined;
  private failures = 0;
  private nextAttemptAt = 0;
  /** `sslmode=prefer`/`allow`: set once the server said it has no TLS. */
  private plaintext = false;
  private closed = false;
  /** Called for every notification on this connection. */
  onNotification: ((channel: string, payload: string) => void) | undefined;
  /** Called when an established connection is lost (not on our own destroy). */
  onLost: ((error: Error) => void) | undefined;

  constructor(
    private readonly target: PostgresTarget,
    readonly timeoutMs: number,
    private readonly role: "lock" | "listen",
  ) {}

  get where(): string {
    return describeTarget(this.target);
  }

  /**
   * Runs one statement. Rejects with PostgresUnavailableError on timeout or a lost connection, a
   * PermanentLockError when retrying cannot help, the signal's reason on abort, or the server's
   * DatabaseError (statement-level; the caller maps it).
   */
  async query(verb: Verb, table: string, text: string, values: unknown[], signal?: AbortSignal): Promise<pg.QueryResult> {
    if (this.closed) throw new LockError(`PostgreSQL lock on ${this.where} is closed`);
    signal?.throwIfAborted();
    let used: pg.Client | undefined;
    const work = async (): Promise<pg.QueryResult> => {
      const client = await this.connection();
      used = client;
      return await client.query(text, values);
    };
    return await this.bounded(work(), `${verb} on ${table}`, signal, () => {
      // Whatever was in flight (connecting or a statement) is abandoned with its socket.
      if (used !== undefined) this.destroy(used);
      else this.abandonConnecting();
    }).catch((error: unknown) => {
      if (signal?.aborted && error === signal.reason) throw error;
      throw this.classify(error, verb, table, used);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    this.abandonConnecting();
    if (client === undefined) return;
    // end() waits for the server's goodbye, which a frozen server never sends: bound it, then destroy.
    await Promise.race([client.end().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 200).unref())]);
    this.destroy(client);
  }

  private bounded<T>(work: Promise<T>, what: string, signal: AbortSignal | undefined, abandon: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (settle: () => void): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        settle();
      };
      const onAbort = (): void =>
        finish(() => {
          abandon();
          reject(signal?.reason);
        });
      const timer = setTimeout(
        () =>
          finish(() => {
            abandon();
            reject(new PostgresUnavailableError(`PostgreSQL at ${this.where} did not answer (${what}) within ${this.timeoutMs}ms`));
          }),
        this.timeoutMs,
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      work.then(
        (value) => finish(() => resolve(value)),
        (error: unknown) => finish(() => reject(error)),
      );
    });
  }

  private connection(): Promise<pg.Client> {
    if (this.client !== undefined) return Promise.resolve(this.client);
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<pg.Client> {
    const wait = this.nextAttemptAt - Date.now();
    if (wait > 0) {
      // Inside the caller's time bound: a call that cannot wait this long times out instead.
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
    }
    if (this.closed) throw new LockError(`PostgreSQL lock on ${this.where} is closed`);
    const client = new pg.Client(this.clientConfig());
    const attempt = client;
    this.pending = attempt;
    client.on("error", (error: Error) => this.lost(attempt, error));
    client.on("end", () => this.lost(attempt, new PostgresUnavailableError(`connection to PostgreSQL at ${this.where} closed`)));
    client.on("notification", (message: pg.Notification) => this.onNotification?.(message.channel, message.payload ?? ""));
    try {
      await client.connect();
    } catch (error) {
      this.failures++;
      this.nextAttemptAt = Date.now() + backoff(this.failures);
      this.destroy(client);
      if (this.pending === attempt) this.pending = undefined;
      if (!this.plaintext && (this.target.sslmode === "prefer" || this.target.sslmode === "allow")) {
        if (error instanceof Error && /does not support SSL/.test(error.message)) {
          this.plaintext = true;
          this.nextAttemptAt = 0;
          this.failures = 0;
          return this.connect();
        }
      }
      throw error;
    }
    if (this.pending === attempt) this.pending = undefined;
    if (this.closed || this.abandoned.has(attempt)) {
      this.destroy(client);
      throw new PostgresUnavailableError(`connection to PostgreSQL at ${this.where} abandoned`);
    }
    this.failures = 0;
    this.nextAttemptAt = 0;
    this.client = client;
    return client;
  }

  private pending: pg.Client | undefined;
  private readonly abandoned = new WeakSet<pg.Client>();

  private abandonConnecting(): void {
    const pending = this.pending;
    if (pending === undefined) return;
    this.pending = undefined;
    this.abandoned.add(pending);
    this.destroy(pending);
  }

  private clientConfig(): pg.ClientConfig {
    const t = this.target;
    // The server gives up on a statement (or on waiting for a row or table lock) before we do.
    const serverTimeout = Math.max(1, Math.floor(this.timeoutMs * 0.8));
    const config: pg.ClientConfig = {
      host: t.host,
      port: t.port,
      database: t.database,
      user: t.user,
      application_name: t.applicationName,
      keepAlive: true,
      keepAliveInitialDelayMillis: 1000,
      connectionTimeoutMillis: Math.min(this.timeoutMs, t.connectTimeoutMs ?? this.timeoutMs),
      password: () => t.password ?? readPassfile(t) ?? missingPassword(t),
    };
    if (t.serverOptions !== undefined) config.options = t.serverOptions;
    if (this.role === "lock") {
      config.statement_timeout = serverTimeout;
      config.lock_timeout = serverTimeout;
    }
    if (t.tls !== undefined && !this.plaintext) config.ssl = t.tls;
    return config;
  }

  private lost(client: pg.Client, error: Error): void {
    if (this.client !== client) return;
    this.client = undefined;
    this.destroy(client);
    if (!this.closed) this.onLost?.(error);
  }

  private destroy(client: pg.Client): void {
    if (this.client === client) this.client = undefined;
    try {
      client.connection.stream.destroy();
    } catch {
      // Never connected: nothing to destroy.
    }
  }

  private classify(error: unknown, verb: Verb, table: string, used: pg.Client | undefined): unknown {
    if (error instanceof PostgresUnavailableError || error instanceof PermanentLockError) return error;
    if (!(error instanceof Error)) return error;
    const code = (error as { code?: unknown }).code;
    const on = table === "" ? "" : ` ${table}`;
    const who = `role "${this.target.user}"`;
    if (error instanceof pg.DatabaseError) {
      switch (code) {
        case "28P01":
        case "28000":
          return new PermanentLockError(
            `PostgreSQL at ${this.where} rejected ${who} (${error.message}); check the user and the password (URL, PGPASSWORD or PGPASSFILE/~/.pgpass) and pg_hba.conf`,
            { cause: error },
          );
        case "3D000":
          return new PermanentLockError(`PostgreSQL at ${this.where}: ${error.message}; create it or name another database in the URL`, { cause: error });
        case "42501":
          return new PermanentLockError(
            `permission denied: ${who} may not ${verb}${on} on ${this.where} (${error.message}); grant it with the SQL in docs/postgres.md`,
            { cause: error },
          );
        case "3F000":
          return new PermanentLockError(
            `the schema of${on} does not exist on ${this.where} (${error.message}); create it or choose another with --pg-table`,
            { cause: error },
          );
        case "42703":
        case "42804":
          return new PermanentLockError(
            `table${on} on ${this.where} does not have leader-run's columns (${error.message}); create it with the SQL in docs/postgres.md or choose another with --pg-table`,
            { cause: error },
          );
        case "57014":
        case "55P03":
          return new PostgresUnavailableError(`PostgreSQL at ${this.where} gave up on ${verb}${on}: ${error.message}`, { cause: error });
      }
      // Class 08 (connection), 57P (shutdown, terminated backend), 53 (resources), 25006 (read-only standby):
      // the server or our session is going away; reconnect.
      if (typeof code === "string" && /^(08|57P|53|58|25006|40001|40P01)/.test(code)) {
        if (used !== undefined) this.destroy(used);
        return new PostgresUnavailableError(`PostgreSQL at ${this.where} failed ${verb}${on}: ${error.message}`, { cause: error });
      }
      return error;
    }
    if (/client password must be a string|password must be a string/i.test(error.message) || error.name === "MissingPasswordError") {
      return new PermanentLockError(
        `PostgreSQL at ${this.where} asks ${who} for a password but none is set: use PGPASSWORD, PGPASSFILE (~/.pgpass) or the URL`,
        { cause: error },
      );
    }
    if (/self[- ]signed|certificate|unable to verify|altnames|does not support SSL|ERR_TLS|EPROTO/i.test(`${error.message} ${String(code)}`)) {
      return new PermanentLockError(`TLS to PostgreSQL at ${this.where} failed: ${error.message}; check sslmode and sslrootcert/sslcert/sslkey`, { cause: error });
    }
    // Sockets: refused, reset, timed out, terminated. Reconnect on the next call.
    if (used !== undefined) this.destroy(used);
    return new PostgresUnavailableError(`PostgreSQL at ${this.where} is unavailable (${verb}${on}): ${error.message || String(code)}`, { cause: error });
  }
}

class MissingPasswordError extends Error {}

function missingPassword(target: PostgresTarget): never {
  const error = new MissingPasswordError(`no password for role "${target.user}"`);
  error.name = "MissingPasswordError";
  throw error;
}

/** Reconnect backoff: 100 ms doubling to 2 s, jittered so a fleet does not reconnect in step. */
function backoff(attempt: number): number {
  const base = Math.min(100 * 2 ** Math.min(attempt - 1, 5), 2000);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}
