import { LockConfigError } from "../errors.js";
import { readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import type { ConnectionOptions as TlsOptions } from "node:tls";
import { parse as parseConnectionString } from "pg-connection-string";

/**
 * Connection settings as PostgreSQL users know them: the URL first, then the libpq environment
 * variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD, PGPASSFILE, PGSSLMODE, PGSSLROOTCERT,
 * PGSSLCERT, PGSSLKEY, PGAPPNAME, PGCONNECT_TIMEOUT), then libpq's defaults. TLS modes follow libpq
 * (`uselibpqcompat`), not node-postgres's stricter aliases, so `sslmode=require` means what the
 * PostgreSQL docs say. Secrets are resolved here and never logged.
 */

/** Bad settings (exit 64): the URL, a TLS file, the table name. */
export class PostgresConfigError extends LockConfigError {}

export type SslMode = "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full";
const SSL_MODES: readonly SslMode[] = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];

export interface PostgresTarget {
  /** A host name or address, or a Unix socket directory (starting with `/`). Default `localhost`. */
  host: string;
  port: number;
  database: string;
  user: string;
  /** Only when given in the URL or PGPASSWORD; otherwise PGPASSFILE / ~/.pgpass is read on demand. */
  password?: string;
  passfile: string;
  sslmode: SslMode;
  /** Undefined when TLS is off. */
  tls?: TlsOptions;
  applicationName: string;
  connectTimeoutMs?: number;
  /** libpq `options` / PGOPTIONS: server settings at connect, e.g. `-c search_path=ops`. */
  serverOptions?: string;
}

/** libpq parameters we map; anything else in the query goes to the server as a run-time parameter. */
const ENV_PARAMS: Record<string, string> = {
  sslmode: "PGSSLMODE",
  sslrootcert: "PGSSLROOTCERT",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
};

export function isPostgresUrl(url: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(url);
}

/**
 * Resolves the URL and the environment into connection settings.
 * @throws PostgresConfigError naming what is wrong (never the password).
 */
export function resolvePostgresTarget(url: string, env: NodeJS.ProcessEnv): PostgresTarget {
  if (!isPostgresUrl(url)) throw new PostgresConfigError("write postgres://[user[:password]@]host[:port]/database");
  // PGSSL* variables fill in what the URL leaves out, as libpq does.
  const extra: string[] = [];
  for (const [param, variable] of Object.entries(ENV_PARAMS)) {
    const value = env[variable];
    if (value !== undefined && value !== "" && !new RegExp(`[?&]${param}=`).test(url)) {
      extra.push(`${param}=${encodeURIComponent(value)}`);
    }
  }
  const withEnv = extra.length === 0 ? url : `${url}${url.includes("?") ? "&" : "?"}${extra.join("&")}`;
  const sslmode = (/[?&]sslmode=([^&]*)/.exec(withEnv)?.[1] ?? "") || undefined;
  if (sslmode !== undefined && !SSL_MODES.includes(sslmode as SslMode)) {
    throw new PostgresConfigError(`sslmode=${sslmode} is not one of ${SSL_MODES.join(", ")}`);
  }
  let parsed: ReturnType<typeof parseConnectionString>;
  try {
    // libpq semantics: prefer/require do not verify, verify-ca checks the chain, verify-full the name too.
    // "allow"/"prefer" are parsed as "require" and fall back to plaintext when the server has no TLS.
    const forParser = withEnv.replace(/([?&]sslmode=)(?:allow|prefer)(?=&|$)/, "$1require");
    parsed = parseConnectionString(`${forParser}${forParser.includes("?") ? "&" : "?"}uselibpqcompat=true`);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== undefined && /^E[A-Z]+$/.test(code)) {
      const path = (error as NodeJS.ErrnoException).path ?? "";
      throw new PostgresConfigError(`cannot read the TLS file ${path} named by sslrootcert/sslcert/sslkey (PGSSLROOTCERT/PGSSLCERT/PGSSLKEY): ${code}`);
    }
    const message = (error as Error).message.replace(/postgres(?:ql)?:\/\/\S*/g, "<url>");
    throw new PostgresConfigError(`cannot parse the connection URL: ${message}`);
  }
  const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);
  const host = str(parsed.host) ?? str(env.PGHOST) ?? "localhost";
  const portText = str(parsed.port) ?? str(env.PGPORT) ?? "5432";
  const port = Number(portText);
  if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) throw new PostgresConfigError(`bad port "${portText}": use a number from 1 to 65535`);
  const user = str(parsed.user) ?? str(env.PGUSER) ?? str(env.USER) ?? "postgres";
  const database = str(parsed.database) ?? str(env.PGDATABASE) ?? user;
  const target: PostgresTarget = {
    host,
    port,
    database,
    user,
    passfile: str(parsed.passfile) ?? str(env.PGPASSFILE) ?? join(str(env.HOME) ?? homedir(), ".pgpass"),
    sslmode: (sslmode as SslMode | undefined) ?? "disable",
    applicationName: str(parsed.application_name) ?? str(env.PGAPPNAME) ?? "leader-run",
  };
  const password = str(parsed.password) ?? str(env.PGPASSWORD);
  if (password !== undefined) target.password = password;
  if (target.sslmode !== "disable") {
    const ssl = typeof parsed.ssl === "object" && parsed.ssl !== null ? (parsed.ssl as TlsOptions) : {};
    if ((ssl.cert === undefined) !== (ssl.key === undefined)) {
      throw new PostgresConfigError("a TLS client certificate needs both sslcert and sslkey (or PGSSLCERT and PGSSLKEY)");
    }
    target.tls = ssl;
  }
  const serverOptions = str(parsed.options) ?? str(env.PGOPTIONS);
  if (serverOptions !== undefined) target.serverOptions = serverOptions;
  const timeout = str(parsed.connect_timeout) ?? str(env.PGCONNECT_TIMEOUT);
  if (timeout !== undefined) {
    const seconds = Number(timeout);
    if (!Number.isFinite(seconds) || seconds < 0) throw new PostgresConfigError(`connect_timeout=${timeout} is not a number of seconds`);
    // libpq treats values below 2 s as 2 s.
    if (seconds > 0) target.connectTimeoutMs = Math.max(2000, seconds * 1000);
  }
  return target;
}

export function describeTarget(target: PostgresTarget): string {
  const host = target.host.startsWith("/") ? target.host : target.host.includes(":") ? `[${target.host}]` : target.host;
  return `${host}:${target.port}/${target.database}`;
}

/**
 * The password from a libpq password file (`host:port:database:user:password`, `*` matches anything,
 * `\:` and `\\` escapes). Like libpq, a file readable by group or others is ignored.
 */
export function readPassfile(target: PostgresTarget): string | undefined {
  let text: string;
  try {
    const stat = statSync(target.passfile);
    if (!stat.isFile() || (stat.mode & 0o077) !== 0) return undefined;
    text = readFileSync(target.passfile, "utf8");
  } catch {
    return undefined;
  }
  const want = [target.host.startsWith("/") ? "localhost" : target.host, String(target.port), target.database, target.user];
  for (const line of text.split(/\r?\n/)) {
    if (line === "" || line.startsWith("#")) continue;
    const fields: string[] = [];
    let current = "";
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (c === "\\" && i + 1 < line.length) current += line[++i];
      else if (c === ":" && fields.length < 4) {
        fields.push(current);
        current = "";
      } else current += c;
    }
    fields.push(current);
    if (fields.length !== 5) continue;
    if (want.every((value, i) => fields[i] === "*" || fields[i] === value)) return fields[4];
  }
  return undefined;
}

/** `[schema.]table`, each an unquoted PostgreSQL identifier (lower case), at most 63 bytes. */
export interface TableName {
  schema?: string;
  table: string;
}

export const DEFAULT_TABLE = "leader_run_leases";
const IDENT = /^[a-z_][a-z0-9_$]{0,62}$/;

export function parseTableName(text: string): TableName {
  const parts = text.split(".");
  const bad = (): PostgresConfigError =>
    new PostgresConfigError(
      `table name ${JSON.stringify(text)}: write [schema.]table with lower-case letters, digits and _ (at most 63 each; the terms table adds "_terms")`,
    );
  if (parts.length > 2 || parts.some((p) => !IDENT.test(p))) throw bad();
  const table = parts[parts.length - 1] ?? "";
  // The terms table and the notification channel are derived names: keep them within 63 bytes too.
  if (table.length > 57) throw bad();
  return parts.length === 2 ? { schema: parts[0] as string, table } : { table };
}

export function qualified(name: TableName, suffix = ""): string {
  return name.schema === undefined ? `${name.table}${suffix}` : `${name.schema}.${name.table}${suffix}`;
}
