import { resolve as resolvePath } from "node:path";
import { fileURLToPath } from "node:url";
import { LockConfigError } from "./errors.js";
import { RedisConfigError, parseRedisUrl } from "./redis/url.js";
import type { RedisTarget } from "./redis/url.js";

/**
 * `--lock <url>`: where the lease lives, parsed into a typed spec before anything connects.
 *
 * Hand-parsed rather than with WHATWG `URL`: etcd (and Redis Sentinel/Cluster) URLs carry several
 * comma-separated hosts (`etcd://a:2379,b:2379`), which `URL` rejects. Redis URLs are parsed by the
 * Redis backend's own light parser (redis/url.ts, no ioredis), so both agree on every form.
 * Every spec keeps `url` exactly as given (it may hold a password: pass it to the driver only) and
 * `redacted`, the same URL with secrets removed, for logs, errors and the child's `LEADER_RUN_LOCK`.
 */

export interface HostPort {
  host: string;
  port: number;
}

interface SpecBase {
  /** As given; may contain a password. Never log it. */
  url: string;
  /** `url` without password; safe to print and to hand to the child. */
  redacted: string;
}

export interface FileLockSpec extends SpecBase {
  kind: "file";
  /** Absolute directory; undefined = the file backend's default. */
  dir?: string;
}

export interface RedisLockSpec extends SpecBase {
  kind: "redis";
  /** Mode, TLS, hosts, database, credentials and options, as the Redis backend reads them. */
  target: RedisTarget;
}

export interface KubernetesLockSpec extends SpecBase {
  kind: "kubernetes";
}

export interface EtcdLockSpec extends SpecBase {
  kind: "etcd";
  /** `etcds://`: every endpoint is reached over TLS. */
  tls: boolean;
  endpoints: HostPort[];
  username?: string;
  password?: string;
  /** Key prefix from the path, without the leading `/`; undefined = the backend's default. */
  prefix?: string;
  params: Record<string, string>;
}

export interface PostgresLockSpec extends SpecBase {
  kind: "postgres";
  /** The connection string is passed to the driver as is (`url`), so every libpq option works. */
}

export type LockSpec = FileLockSpec | RedisLockSpec | KubernetesLockSpec | EtcdLockSpec | PostgresLockSpec;
export type LockKind = LockSpec["kind"];

/** The schemes `--lock` accepts, as shown to users. */
export const LOCK_SCHEMES = [
  "file:",
  "redis://",
  "rediss://",
  "redis+sentinel://",
  "redis+cluster://",
  "rediss+sentinel://",
  "rediss+cluster://",
  "kubernetes:",
  "k8s:",
  "etcd://",
  "etcds://",
  "postgres://",
  "postgresql://",
] as const;

export const DEFAULT_LOCK_URL = "file:";

const SCHEME = /^([a-zA-Z][a-zA-Z0-9+.-]*):/;

/**
 * Parses `--lock`. `cwd` resolves `file:relative`. `flag` names the source in error messages
 * (e.g. `--lock` or `LEADER_RUN_LOCK`).
 * @throws LockConfigError with a one-line message that never contains the password.
 */
export function parseLockUrl(url: string, options: { cwd?: string; flag?: string } = {}): LockSpec {
  const flag = options.flag ?? "--lock";
  const redacted = redactLockUrl(url);
  const bad = (why: string): LockConfigError => new LockConfigError(`${flag} ${JSON.stringify(redacted)}: ${why}`);
  const m = SCHEME.exec(url);
  if (!m) {
    if (url === "") throw bad(`is empty; use one of ${LOCK_SCHEMES.join(", ")}`);
    if (url.startsWith("/") || url.startsWith(".")) {
      throw bad(`is not a lock URL; for a lock directory write file:${redacted}`);
    }
    throw bad(`is not a lock URL; use one of ${LOCK_SCHEMES.join(", ")}`);
  }
  const scheme = (m[1] ?? "").toLowerCase();
  const rest = url.slice(m[0].length);
  switch (scheme) {
    case "file":
      return parseFile(url, redacted, rest, options.cwd ?? process.cwd(), bad);
    case "kubernetes":
    case "k8s":
      if (rest !== "" && rest !== "//") {
        throw bad(`${scheme}: takes no address; choose the namespace with --namespace and the cluster with --kubeconfig`);
      }
      return { kind: "kubernetes", url, redacted };
    case "redis":
    case "rediss":
    case "redis+sentinel":
    case "redis+cluster":
    case "rediss+sentinel":
    case "rediss+cluster":
      try {
        return { kind: "redis", target: parseRedisUrl(url), url, redacted };
      } catch (e) {
        // Its messages name the URL with the password masked already.
        if (e instanceof RedisConfigError) throw new LockConfigError(`${flag}: ${e.message}`);
        throw e;
      }
    case "etcd":
    case "etcds":
      return parseEtcd(url, redacted, rest, scheme === "etcds", bad);
    case "postgres":
    case "postgresql":
      if (!rest.startsWith("//")) throw bad(`write ${scheme}://[user[:password]@]host[:port]/database`);
      return { kind: "postgres", url, redacted };
    default:
      throw bad(`unknown lock scheme "${scheme}:"; use one of ${LOCK_SCHEMES.join(", ")}`);
  }
}

type Bad = (why: string) => LockConfigError;

function parseFile(url: string, redacted: string, rest: string, cwd: string, bad: Bad): FileLockSpec {
  if (rest === "" || rest === "//") return { kind: "file", url, redacted };
  if (rest.startsWith("//")) {
    // file:///abs/dir (a real file URL: percent-decoded, local host only)
    let dir: string;
    try {
      dir = fileURLToPath(`file:${rest}`);
    } catch {
      throw bad("only local directories are supported: write file:/absolute/dir or file:relative/dir");
    }
    return { kind: "file", dir, url, redacted };
  }
  // file:/abs or file:relative, taken literally (no percent-decoding), like a shell path.
  return { kind: "file", dir: resolvePath(cwd, rest), url, redacted };
}

interface Authority {
  username?: string;
  password?: string;
  hosts: HostPort[];
  path: string;
  params: Record<string, string>;
}

/** `//[user[:password]@]host[:port][,host[:port]…][/path][?query]` */
function parseAuthority(rest: string, defaultPort: number, bad: Bad): Authority {
  if (!rest.startsWith("//")) throw bad("write the URL as scheme://[user[:password]@]host[:port]");
  let s = rest.slice(2);
  const hashAt = s.indexOf("#");
  if (hashAt >= 0) throw bad("a lock URL takes no #fragment");
  let query = "";
  const q = s.indexOf("?");
  if (q >= 0) {
    query = s.slice(q + 1);
    s = s.slice(0, q);
  }
  const slash = s.indexOf("/");
  const authority = slash >= 0 ? s.slice(0, slash) : s;
  const path = slash >= 0 ? s.slice(slash) : "";
  const at = authority.lastIndexOf("@");
  const result: Authority = { hosts: [], path, params: {} };
  const hostPart = at >= 0 ? authority.slice(at + 1) : authority;
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(":");
    const user = decode(colon >= 0 ? userinfo.slice(0, colon) : userinfo, "user name", bad);
    if (user !== "") result.username = user;
    if (colon >= 0) {
      const password = decode(userinfo.slice(colon + 1), "password", bad);
      if (password !== "") result.password = password;
    }
  }
  if (hostPart !== "") {
    for (const entry of hostPart.split(",")) result.hosts.push(parseHostPort(entry, defaultPort, bad));
  }
  if (query !== "") {
    for (const pair of query.split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      const key = decode(eq >= 0 ? pair.slice(0, eq) : pair, "query parameter", bad);
      result.params[key] = decode(eq >= 0 ? pair.slice(eq + 1) : "", "query parameter", bad);
    }
  }
  return result;
}

function decode(text: string, what: string, bad: Bad): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw bad(`the ${what} has a bad %-escape; percent-encode special characters (e.g. @ as %40)`);
  }
}

function parseHostPort(entry: string, defaultPort: number, bad: Bad): HostPort {
  let host: string;
  let portText: string | undefined;
  if (entry.startsWith("[")) {
    const close = entry.indexOf("]");
    if (close < 0) throw bad(`bad IPv6 address "${entry}": write [addr]:port`);
    host = entry.slice(1, close);
    const after = entry.slice(close + 1);
    if (after !== "" && !after.startsWith(":")) throw bad(`bad host "${entry}"`);
    portText = after === "" ? undefined : after.slice(1);
  } else {
    const colon = entry.lastIndexOf(":");
    host = colon >= 0 ? entry.slice(0, colon) : entry;
    portText = colon >= 0 ? entry.slice(colon + 1) : undefined;
  }
  if (host === "" || /[\s/?#@[\]]/.test(host)) throw bad(`bad host "${entry}": write host[:port]`);
  let port = defaultPort;
  if (portText !== undefined) {
    port = Number(portText);
    if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) {
      throw bad(`bad port "${portText}" in "${entry}": use a number from 1 to 65535`);
    }
  }
  return { host, port };
}

function parseEtcd(url: string, redacted: string, rest: string, tls: boolean, bad: Bad): EtcdLockSpec {
  const a = parseAuthority(rest, 2379, bad);
  if (a.hosts.length === 0) throw bad(`write ${tls ? "etcds" : "etcd"}://[user:password@]host:2379[,host2:2379…][/key-prefix]`);
  const spec: EtcdLockSpec = { kind: "etcd", tls, endpoints: a.hosts, params: a.params, url, redacted };
  if (a.username !== undefined) spec.username = a.username;
  if (a.password !== undefined) spec.password = a.password;
  const prefix = a.path.replace(/^\/+/, "");
  if (prefix !== "") spec.prefix = decode(prefix, "key prefix", bad);
  return spec;
}

/** Query parameters that carry secrets in the URLs of the supported backends. */
const SECRET_PARAM = /^(?:password|passwd|pass|pwd|sslpassword|secret|token|auth|access[_-]?token|api[_-]?key)$/i;

/**
 * The lock URL without any password: `redis://user:pw@h/0` → `redis://user@h/0`,
 * `redis://:pw@h` → `redis://h`, and secret query parameters (`?password=…`) are dropped.
 * Safe for logs, error messages and the child's `LEADER_RUN_LOCK`.
 */
export function redactLockUrl(url: string): string {
  let out = redactUserinfo(url);
  const q = out.indexOf("?");
  if (q >= 0) {
    const hash = out.indexOf("#", q);
    const query = out.slice(q + 1, hash >= 0 ? hash : undefined);
    const tail = hash >= 0 ? out.slice(hash) : "";
    const kept = query.split("&").filter((pair) => {
      const eq = pair.indexOf("=");
      let key = eq >= 0 ? pair.slice(0, eq) : pair;
      try {
        key = decodeURIComponent(key);
      } catch {
        // keep the raw key for the test
      }
      return pair !== "" && !SECRET_PARAM.test(key);
    });
    out = out.slice(0, q) + (kept.length > 0 ? `?${kept.join("&")}` : "") + tail;
  }
  return out;
}

const USERINFO = /([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^/?#\s]*)@/g;
const SECRET_PARAM_IN_TEXT =
  /([?&;])(?:password|passwd|pass|pwd|sslpassword|secret|token|auth|access[_-]?token|api[_-]?key)=[^&\s#"']*/gi;

function redactUserinfo(text: string): string {
  return text.replace(USERINFO, (_match, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(":");
    if (colon < 0) return `${scheme}${userinfo}@`;
    const user = userinfo.slice(0, colon);
    return user === "" ? scheme : `${scheme}${user}@`;
  });
}

/**
 * Removes URL passwords (and secret query parameters) wherever they appear in free text, such as an
 * error message from a driver that echoes its connection string. Used by the logger on every string.
 */
export function redactSecrets(text: string): string {
  if (!text.includes("://") && !/[?&;]/.test(text)) return text;
  return redactUserinfo(text).replace(SECRET_PARAM_IN_TEXT, (_m, sep: string) => `${sep}***`);
}
