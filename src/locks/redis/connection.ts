import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";
import { LockError, PermanentLockError } from "../../election/lock.js";
import { RedisConfigError, describeTarget, type RedisTarget } from "./url.js";

/** How to reach Redis, with every secret already resolved. Never logged. */
export interface RedisConnectionSettings {
  target: RedisTarget;
  username?: string;
  password?: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
  tls?: ConnectionOptions;
  /** Bound on every command (and on connecting); below the renew deadline. */
  commandTimeoutMs: number;
}

export type RedisClient = Redis | Cluster;

/** Where a secret may come from, most specific first. Only the first source that is set is used. */
export interface SecretSources {
  value?: string | undefined;
  file?: string | undefined;
  env?: string | undefined;
  urlFile?: string | undefined;
  urlEnv?: string | undefined;
  urlValue?: string | undefined;
  /** Read last, when nothing else names a secret. */
  defaultEnv: string;
}

/**
 * Resolves a password from the first source that is set. A file may end with one newline (as `echo`
 * writes it); a named environment variable or file that is missing is a configuration error, never a
 * silent fall-back to no password.
 */
export function resolveSecret(sources: SecretSources, env: NodeJS.ProcessEnv, what: string): string | undefined {
  if (sources.value !== undefined) return sources.value;
  const file = sources.file ?? sources.urlFile;
  if (file !== undefined) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (error) {
      throw new RedisConfigError(`cannot read the ${what} file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
    const secret = text.replace(/\r?\n$/, "");
    if (secret === "") throw new RedisConfigError(`the ${what} file ${file} is empty`);
    return secret;
  }
  const name = sources.env ?? sources.urlEnv;
  if (name !== undefined) {
    const secret = env[name];
    if (secret === undefined || secret === "") {
      throw new RedisConfigError(`environment variable ${name}, named as the ${what} source, is not set`);
    }
    return secret;
  }
  if (sources.urlValue !== undefined) return sources.urlValue;
  const fallback = env[sources.defaultEnv];
  return fallback === undefined || fallback === "" ? undefined : fallback;
}

/** Reads the PEM files named for TLS; a missing file is a configuration error. */
export function loadTls(files: { caFile?: string; certFile?: string; keyFile?: string; servername?: string }): ConnectionOptions {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new RedisConfigError(`cannot read the TLS ${what} file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  };
  const tls: ConnectionOptions = {};
  if (files.caFile !== undefined) tls.ca = read(files.caFile, "CA");
  if (files.certFile !== undefined) tls.cert = read(files.certFile, "certificate");
  if (files.keyFile !== undefined) tls.key = read(files.keyFile, "key");
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    throw new RedisConfigError("a TLS client certificate needs both cert= and key=");
  }
  if (files.servername !== undefined) tls.servername = files.servername;
  return tls;
}

/** Reconnect backoff: 100 ms doubling to 1 s, with jitter so a fleet does not reconnect in step. */
function backoff(attempt: number): number {
  const base = Math.min(100 * 2 ** Math.min(attempt - 1, 4), 1000);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/**
 * Options shared by every connection. Commands never wait for a connection: with the offline queue off
 * they fail at once while disconnected, and commands in flight when a connection drops fail instead of
 * being re-sent later (a late renewal must never arrive after we gave the lease up; the compare-and-swap
 * would reject it anyway). Each command is also bounded in time by the lock.
 */
function commonOptions(settings: RedisConnectionSettings): RedisOptions {
  const options: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: settings.commandTimeoutMs,
    connectTimeout: settings.commandTimeoutMs,
    retryStrategy: backoff,
    disableClientInfo: true,
    // On close, a connection the server does not close promptly (frozen, gone) is destroyed after this.
    disconnectTimeout: 200,
    // A least-privilege ACL user may not run INFO; readiness is proven by the first real command.
    enableReadyCheck: false,
    // After a failover the old master turns replica: reconnect (Sentinel then finds the new master).
    reconnectOnError: (error: Error) => error.message.startsWith("READONLY"),
  };
  if (settings.username !== undefined) options.username = settings.username;
  if (settings.password !== undefined) options.password = settings.password;
  if (settings.target.tls) options.tls = settings.tls ?? {};
  return options;
}

/** The client for lock commands (`subscriber` false) or for notifications (offline queue on). */
export function createRedisClient(settings: RedisConnectionSettings): RedisClient {
  const { target } = settings;
  const options = commonOptions(settings);
  if (target.mode === "cluster") {
    const { retryStrategy: _r, enableOfflineQueue: _q, ...redisOptions } = options;
    const clusterOptions: ClusterOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableReadyCheck: true,
      clusterRetryStrategy: backoff,
      scaleReads: "master",
      slotsRefreshTimeout: settings.commandTimeoutMs,
      redisOptions,
    };
    return new Cluster(
      target.hosts.map((h) => ({ host: h.host, port: h.port })),
      clusterOptions,
    );
  }
  if (target.mode === "sentinel") {
    const sentinelOptions: RedisOptions = {
      ...options,
      sentinels: target.hosts.map((h) => ({ host: h.host, port: h.port })),
      name: target.master ?? "",
      role: "master",
      db: target.db,
      // Sentinel mode checks the role of the node it reaches before using it, which needs INFO.
      enableReadyCheck: true,
      failoverDetector: true,
      sentinelRetryStrategy: backoff,
      sentinelCommandTimeout: settings.commandTimeoutMs,
    };
    if (settings.sentinelUsername !== undefined) sentinelOptions.sentinelUsername = settings.sentinelUsername;
    if (settings.sentinelPassword !== undefined) sentinelOptions.sentinelPassword = settings.sentinelPassword;
    if (target.tls) {
      sentinelOptions.enableTLSForSentinelMode = true;
      sentinelOptions.sentinelTLS = settings.tls ?? {};
    }
    return new Redis(sentinelOptions);
  }
  const host = target.hosts[0];
  if (host === undefined) throw new RedisConfigError("the Redis URL names no host");
  return new Redis({ ...options, host: host.host, port: host.port, db: target.db });
}

/**
 * A second connection for SUBSCRIBE: subscriptions may wait for a connection (they are idempotent).
 * The caller re-subscribes on every "ready" and handles the outcome: ioredis's own re-subscribe after a
 * reconnect runs under the command timeout with nobody to catch its rejection, so a server that
 * accepts the reconnection but does not answer would crash the process (issue #9). A Cluster's
 * subscriber connection has no command timeout and catches its own re-subscribe.
 */
export function createSubscriber(client: RedisClient): RedisClient {
  if (client instanceof Cluster) return client.duplicate([], { enableOfflineQueue: true, lazyConnect: false });
  return client.duplicate({ enableOfflineQueue: true, lazyConnect: false, autoResubscribe: false });
}

/** Redis is down, unreachable or too slow: the elector keeps trying (not permanent). */
export class RedisUnavailableError extends LockError {}

const AUTH_CODES = /\b(NOAUTH|WRONGPASS|NOPERM)\b/;
const TLS_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "ERR_SSL_WRONG_VERSION_NUMBER",
]);

/** ioredis's wording for a missing connection, in the user's terms. */
const FRIENDLIER: Record<string, string> = {
  "Connection is closed.": "connection closed (is the server up and reachable?)",
  "Stream isn't writeable and enableOfflineQueue options is false": "not connected (reconnecting)",
  "None of startup nodes is available": "no cluster node is reachable",
};

/** The innermost useful error: ioredis wraps node errors of a Cluster in `lastNodeError`. */
function innermost(error: unknown): unknown {
  let current = error;
  for (let i = 0; i < 5; i++) {
    if (typeof current !== "object" || current === null) break;
    const next = (current as { lastNodeError?: unknown }).lastNodeError;
    if (next === undefined || next === null) break;
    current = next;
  }
  return current;
}

function firstLine(text: string): string {
  return (text.split("\n")[0] ?? "").trim();
}

/**
 * Maps a Redis or network error to the lock's error classes: credentials and permissions (and TLS
 * certificates) are permanent (the CLI exits 69); anything else may heal, so the elector retries.
 */
export function classifyRedisError(error: unknown, settings: RedisConnectionSettings): LockError {
  if (error instanceof LockError) return error;
  const where = describeTarget(settings.target);
  const inner = innermost(error);
  const message = firstLine(inner instanceof Error ? inner.message : String(inner));
  const code = (inner as { code?: unknown } | null)?.code;
  const auth = AUTH_CODES.exec(message)?.[1];
  const user = settings.username ?? "default";
  // With a password set, NOAUTH means it was refused: a command pipelined behind a failed AUTH gets it.
  if (auth === "NOAUTH" && settings.password === undefined) {
    return new PermanentLockError(
      `Redis at ${where} requires a password (${message}): set one with password_file=, password_env= or LEADER_RUN_REDIS_PASSWORD`,
      { cause: error },
    );
  }
  if (auth === "WRONGPASS" || auth === "NOAUTH") {
    // The server's WRONGPASS text adds nothing; a NOAUTH here only means our AUTH had failed.
    return new PermanentLockError(
      `Redis at ${where} rejected the credentials of user "${user}": check the password and that the user is enabled`,
      { cause: error },
    );
  }
  if (auth === "NOPERM") {
    return new PermanentLockError(
      `Redis user "${user}" at ${where} lacks a permission (${message}): see docs/redis.md for the ACL leader-run needs`,
      { cause: error },
    );
  }
  if (typeof code === "string" && TLS_CODES.has(code)) {
    return new PermanentLockError(`TLS to Redis at ${where} failed (${code}: ${message}): check ca=, servername= and the server certificate`, {
      cause: error,
    });
  }
  return new RedisUnavailableError(`Redis at ${where} is unavailable: ${FRIENDLIER[message] ?? message}`, { cause: error });
}
