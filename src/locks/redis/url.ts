/**
 * `--lock` URLs for the Redis backend:
 *
 *   redis://[user[:password]@]host[:port][/db][?options]
 *   rediss://…                                         (TLS)
 *   redis+sentinel://[user[:password]@]host[:port],host[:port]/<master>[/db][?options]
 *   redis+cluster://[user[:password]@]host[:port],host[:port][?options]
 *   rediss+sentinel://…, rediss+cluster://…            (TLS)
 *
 * Options (query parameters) never carry a secret themselves, only where to find one:
 * `prefix`, `password_file`, `password_env`, `sentinel_username`, `sentinel_password_file`,
 * `sentinel_password_env`, `ca`, `cert`, `key` (PEM file paths), `servername`.
 */
import { LockConfigError } from "../errors.js";

export type RedisMode = "standalone" | "sentinel" | "cluster";

export interface RedisHost {
  host: string;
  port: number;
}

export interface RedisTarget {
  mode: RedisMode;
  tls: boolean;
  hosts: RedisHost[];
  /** Sentinel master group name. */
  master?: string;
  db: number;
  username?: string;
  /** Password written into the URL itself (discouraged: prefer a file or an environment variable). */
  password?: string;
  /** Query options, by name. */
  options: RedisUrlOptions;
}

export interface RedisUrlOptions {
  prefix?: string;
  passwordFile?: string;
  passwordEnv?: string;
  sentinelUsername?: string;
  sentinelPasswordFile?: string;
  sentinelPasswordEnv?: string;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  servername?: string;
}

/** A malformed Redis URL or contradictory Redis settings: a usage error (the CLI exits 64). */
export class RedisConfigError extends LockConfigError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RedisConfigError";
  }
}

const SCHEMES: Record<string, { mode: RedisMode; tls: boolean }> = {
  redis: { mode: "standalone", tls: false },
  rediss: { mode: "standalone", tls: true },
  "redis+sentinel": { mode: "sentinel", tls: false },
  "rediss+sentinel": { mode: "sentinel", tls: true },
  "redis+cluster": { mode: "cluster", tls: false },
  "rediss+cluster": { mode: "cluster", tls: true },
};

const QUERY_OPTIONS: Record<string, keyof RedisUrlOptions> = {
  prefix: "prefix",
  password_file: "passwordFile",
  password_env: "passwordEnv",
  sentinel_username: "sentinelUsername",
  sentinel_password_file: "sentinelPasswordFile",
  sentinel_password_env: "sentinelPasswordEnv",
  ca: "caFile",
  cert: "certFile",
  key: "keyFile",
  servername: "servername",
};

/**
 * Splits a URL into scheme, userinfo, authority, path and query. The userinfo ends at the last `@`
 * before the query, so an unencoded `@` or `/` in a password neither breaks parsing nor leaks.
 */
function splitUrl(spec: string):
  | { scheme: string; userinfo?: string; authority: string; path: string; query?: string }
  | undefined {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/is.exec(spec);
  if (!m || m[1] === undefined || m[2] === undefined) return undefined;
  let rest = m[2];
  let query: string | undefined;
  const q = rest.indexOf("?");
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  if (rest.includes("#")) return undefined;
  let userinfo: string | undefined;
  const at = rest.lastIndexOf("@");
  if (at >= 0) {
    userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
  }
  const slash = rest.indexOf("/");
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? "" : rest.slice(slash);
  const parts: { scheme: string; userinfo?: string; authority: string; path: string; query?: string } = {
    scheme: m[1],
    authority,
    path,
  };
  if (userinfo !== undefined) parts.userinfo = userinfo;
  if (query !== undefined) parts.query = query;
  return parts;
}

/** True for the schemes this backend serves. */
export function isRedisUrl(spec: string): boolean {
  const m = /^([a-z+]+):/i.exec(spec);
  return m?.[1] !== undefined && m[1].toLowerCase() in SCHEMES;
}

export function parseRedisUrl(spec: string): RedisTarget {
  const shown = redactRedisUrl(spec);
  const m = splitUrl(spec.trim());
  if (!m) throw new RedisConfigError(`invalid Redis URL ${shown}: expected redis://[user:password@]host:port[/db]`);
  const scheme = m.scheme.toLowerCase();
  const kind = SCHEMES[scheme];
  if (!kind) {
    throw new RedisConfigError(
      `unknown Redis URL scheme "${scheme}:" in ${shown}: use ${Object.keys(SCHEMES).map((s) => `${s}://`).join(", ")}`,
    );
  }
  const target: RedisTarget = { mode: kind.mode, tls: kind.tls, hosts: [], db: 0, options: {} };

  const userinfo = m.userinfo;
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(":");
    const user = decode(colon < 0 ? userinfo : userinfo.slice(0, colon), shown);
    const password = colon < 0 ? undefined : decode(userinfo.slice(colon + 1), shown);
    if (user !== "") target.username = user;
    if (password !== undefined && password !== "") target.password = password;
  }

  const defaultPort = kind.mode === "sentinel" ? 26379 : 6379;
  const hostList = m.authority;
  for (const item of hostList.split(",")) {
    if (item === "") throw new RedisConfigError(`Redis URL ${shown} names no host: write host:port after //`);
    target.hosts.push(parseHost(item, defaultPort, shown));
  }
  if (kind.mode === "standalone" && target.hosts.length > 1) {
    throw new RedisConfigError(
      `Redis URL ${shown} lists several hosts: use redis+sentinel://… for Sentinel or redis+cluster://… for Cluster`,
    );
  }

  const path = m.path.split("/").filter((s) => s !== "");
  if (kind.mode === "sentinel") {
    const master = path.shift();
    if (master === undefined) {
      throw new RedisConfigError(`Sentinel URL ${shown} lacks the master name: redis+sentinel://host:port/<master>`);
    }
    target.master = decode(master, shown);
  }
  const db = path.shift();
  if (db !== undefined) {
    if (kind.mode === "cluster") throw new RedisConfigError(`Redis Cluster has only database 0; remove /${db} from ${shown}`);
    if (!/^\d{1,5}$/.test(db)) throw new RedisConfigError(`invalid Redis database "${db}" in ${shown}: use a number such as /0`);
    target.db = Number(db);
  }
  if (path.length > 0) throw new RedisConfigError(`unexpected path /${path.join("/")} in Redis URL ${shown}`);

  const query = m.query;
  if (query !== undefined && query !== "") {
    for (const pair of query.split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      const key = decode(eq < 0 ? pair : pair.slice(0, eq), shown);
      const value = decode(eq < 0 ? "" : pair.slice(eq + 1), shown);
      const option = QUERY_OPTIONS[key];
      if (option === undefined) {
        const hint = key === "password" ? " (put the password in a file or an environment variable: password_file=, password_env=)" : "";
        throw new RedisConfigError(
          `unknown option "${key}" in Redis URL ${shown}${hint}; known: ${Object.keys(QUERY_OPTIONS).join(", ")}`,
        );
      }
      if (value === "") throw new RedisConfigError(`option "${key}" in Redis URL ${shown} needs a value`);
      target.options[option] = value;
    }
  }
  const tlsOnly = (["caFile", "certFile", "keyFile", "servername"] as const).filter((k) => target.options[k] !== undefined);
  if (!kind.tls && tlsOnly.length > 0) {
    throw new RedisConfigError(`TLS options in ${shown} need a rediss:// URL (rediss+sentinel://, rediss+cluster://)`);
  }
  if (kind.mode !== "sentinel" && Object.keys(target.options).some((k) => k.startsWith("sentinel"))) {
    throw new RedisConfigError(`sentinel_* options in ${shown} need a redis+sentinel:// URL`);
  }
  return target;
}

function parseHost(item: string, defaultPort: number, shown: string): RedisHost {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d*))?$/.exec(item);
  if (!m || m[1] === undefined) throw new RedisConfigError(`invalid host "${item}" in Redis URL ${shown}: use host:port`);
  const host = m[1].startsWith("[") ? m[1].slice(1, -1) : m[1];
  const portText = m[2];
  if (portText === undefined || portText === "") return { host, port: defaultPort };
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RedisConfigError(`invalid port "${portText}" in Redis URL ${shown}: use 1-65535`);
  }
  return { host, port };
}

function decode(text: string, shown: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new RedisConfigError(`bad percent-encoding in Redis URL ${shown}`);
  }
}

/**
 * The URL with any password in it replaced by `***`, for logs, errors and the child's
 * `LEADER_RUN_LOCK`. Tolerates malformed input (it is used to report those too).
 */
export function redactRedisUrl(spec: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)(.*)$/is.exec(spec);
  if (!m || m[1] === undefined || m[2] === undefined) return spec;
  const rest = m[2];
  const q = rest.indexOf("?");
  const at = rest.lastIndexOf("@", q < 0 ? rest.length : q);
  if (at < 0) return spec;
  const userinfo = rest.slice(0, at);
  const colon = userinfo.indexOf(":");
  const shownUser = colon < 0 ? userinfo : `${userinfo.slice(0, colon)}:***`;
  return `${m[1]}${shownUser}${rest.slice(at)}`;
}

/** `redis://host:port/db` (no credentials, no options): how the lock names its server in messages. */
export function describeTarget(target: RedisTarget): string {
  const scheme = `${target.tls ? "rediss" : "redis"}${target.mode === "standalone" ? "" : `+${target.mode}`}`;
  const hosts = target.hosts.map((h) => `${h.host.includes(":") ? `[${h.host}]` : h.host}:${h.port}`).join(",");
  const path = target.mode === "sentinel" ? `/${target.master ?? ""}` : "";
  const db = target.db !== 0 ? `/${target.db}` : "";
  return `${scheme}://${hosts}${path}${db}`;
}
