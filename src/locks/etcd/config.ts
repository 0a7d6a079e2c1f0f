import { LockConfigError } from "../errors.js";
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import type { EtcdLockSpec, HostPort } from "../url.js";

/**
 * Turning an `etcd://` / `etcds://` spec plus options into connection settings with every secret
 * resolved. No etcd client is loaded here, so bad settings fail before anything connects.
 */

/** A bad etcd URL or contradictory etcd settings: a usage error (the CLI exits 64). */
export class EtcdConfigError extends LockConfigError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
  }
}

/** Read when no other password source is given. */
export const ETCD_PASSWORD_ENV = "LEADER_RUN_ETCD_PASSWORD";
export const DEFAULT_ETCD_PREFIX = "leader-run/";

/** URL query options; none carries a secret itself, only where to find one. */
const QUERY_OPTIONS = ["password_file", "password_env", "ca", "cert", "key"] as const;

export interface EtcdTlsFiles {
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
}

export interface EtcdSecretOptions {
  username?: string | undefined;
  password?: string | undefined;
  passwordFile?: string | undefined;
  /** Name of an environment variable holding the password. */
  passwordEnv?: string | undefined;
  tls?: EtcdTlsFiles | undefined;
  env?: NodeJS.ProcessEnv | undefined;
}

/** How to reach etcd, secrets resolved. Never logged. */
export interface EtcdConnectionSettings {
  endpoints: HostPort[];
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  auth?: { username: string; password: string };
}

/** `etcd://h1:2379,h2:2379` (scheme and hosts only): how messages name the cluster. */
export function describeEndpoints(spec: Pick<EtcdLockSpec, "tls" | "endpoints">): string {
  return `${spec.tls ? "etcds" : "etcd"}://${spec.endpoints.map(hostPort).join(",")}`;
}

export function hostPort(h: HostPort): string {
  return `${h.host.includes(":") ? `[${h.host}]` : h.host}:${h.port}`;
}

/**
 * The key prefix: option, else the URL's path, else `leader-run/`. A prefix that does not end in `/`
 * gets one, so `etcd://h/jobs` keeps its leases under `jobs/…` and `etcdctl get --prefix jobs/` lists them.
 */
export function resolvePrefix(spec: EtcdLockSpec, option: string | undefined): string {
  const prefix = option ?? spec.prefix ?? DEFAULT_ETCD_PREFIX;
  if (prefix === "") return "";
  return prefix.endsWith("/") ? prefix : `${prefix}/`;
}

export function resolveConnection(spec: EtcdLockSpec, options: EtcdSecretOptions): EtcdConnectionSettings {
  const shown = spec.redacted;
  for (const key of Object.keys(spec.params)) {
    if (!(QUERY_OPTIONS as readonly string[]).includes(key)) {
      const hint = key === "password" ? " (put the password in a file or an environment variable: password_file=, password_env=)" : "";
      throw new EtcdConfigError(`unknown option "${key}" in etcd URL ${shown}${hint}; known: ${QUERY_OPTIONS.join(", ")}`);
    }
    if (spec.params[key] === "") throw new EtcdConfigError(`option "${key}" in etcd URL ${shown} needs a value`);
  }
  const env = options.env ?? process.env;
  const settings: EtcdConnectionSettings = { endpoints: spec.endpoints };

  const username = options.username ?? spec.username;
  const password = resolvePassword(
    [
      ["value", options.password ?? undefined],
      ["file", options.passwordFile ?? spec.params.password_file],
      ["env", options.passwordEnv ?? spec.params.password_env],
      ["value", spec.password],
    ],
    env,
  );
  if (username !== undefined) {
    if (password === undefined) {
      throw new EtcdConfigError(
        `etcd user "${username}" needs a password: set ${ETCD_PASSWORD_ENV} or --etcd-password-file (never on the command line)`,
      );
    }
    settings.auth = { username, password };
  } else if (password !== undefined) {
    throw new EtcdConfigError(`an etcd password needs a user name: write it in the URL, e.g. ${describeEndpoints(spec).replace("://", "://USER@")}`);
  }

  const files: EtcdTlsFiles = {
    caFile: options.tls?.caFile ?? spec.params.ca,
    certFile: options.tls?.certFile ?? spec.params.cert,
    keyFile: options.tls?.keyFile ?? spec.params.key,
  };
  const given = Object.entries(files).filter(([, v]) => v !== undefined);
  if (!spec.tls) {
    if (given.length > 0) throw new EtcdConfigError(`TLS files (--tls-ca, --tls-cert, --tls-key) need an etcds:// URL, not ${shown}`);
    return settings;
  }
  if ((files.certFile === undefined) !== (files.keyFile === undefined)) {
    throw new EtcdConfigError("a TLS client certificate needs both --tls-cert and --tls-key");
  }
  // Without a CA file, the system's roots (grpc-js wants them spelled out when a client cert is given).
  const tls: NonNullable<EtcdConnectionSettings["tls"]> = {
    ca: files.caFile !== undefined ? readPem(files.caFile, "CA") : Buffer.from(rootCertificates.join("\n")),
  };
  if (files.certFile !== undefined) tls.cert = readPem(files.certFile, "certificate");
  if (files.keyFile !== undefined) tls.key = readPem(files.keyFile, "key");
  settings.tls = tls;
  return settings;
}

/** The first source that is set wins; a named file or variable that is missing is an error, never "no password". */
function resolvePassword(sources: [kind: "value" | "file" | "env", value: string | undefined][], env: NodeJS.ProcessEnv): string | undefined {
  for (const [kind, value] of sources) {
    if (value === undefined) continue;
    if (kind === "value") return value;
    if (kind === "file") {
      let text: string;
      try {
        text = readFileSync(value, "utf8");
      } catch (error) {
        throw new EtcdConfigError(`cannot read the etcd password file ${value}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      }
      const secret = text.replace(/\r?\n$/, "");
      if (secret === "") throw new EtcdConfigError(`the etcd password file ${value} is empty`);
      return secret;
    }
    const secret = env[value];
    if (secret === undefined || secret === "") {
      throw new EtcdConfigError(`environment variable ${value}, named as the etcd password source, is not set`);
    }
    return secret;
  }
  const fallback = env[ETCD_PASSWORD_ENV];
  return fallback === undefined || fallback === "" ? undefined : fallback;
}

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new EtcdConfigError(`cannot read the TLS ${what} file ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
}
