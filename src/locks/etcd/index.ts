import { plainBackend, type LockCapabilities } from "../backend.js";
import { LockConfigError } from "../errors.js";
import { parseLockUrl, type EtcdLockSpec } from "../url.js";
import { EtcdConfigError, describeEndpoints, resolveConnection, resolvePrefix, type EtcdTlsFiles } from "./config.js";
import { EtcdLock } from "./lock.js";

export { EtcdConfigError, ETCD_PASSWORD_ENV, DEFAULT_ETCD_PREFIX } from "./config.js";
export { EtcdUnavailableError } from "./errors.js";
export { EtcdLock, etcdLeaseKeys, type EtcdLeaseKeys } from "./lock.js";

/** What the elector and the conformance suite may rely on with this backend. */
export const etcdCapabilities: LockCapabilities = {
  /** The record hangs on an etcd lease: a dead holder's record disappears by itself. */
  expiresByItself: true,
  /** A watch on the lease's keys wakes waiting candidates at once. */
  notifies: true,
  seesHolderProcesses: false,
  /** etcd lease TTLs are whole seconds. */
  leaseDurationResolutionMs: 1000,
  /** The term counter is a separate key without an etcd lease; it outlives the record. */
  termSurvivesDelete: true,
  timeResolutionMs: 1,
  rawChangesOnEveryWrite: true,
  announcesRenewals: true,
};

export const etcdBackend = plainBackend("etcd", etcdCapabilities, (spec, options) => {
  const { name, identity, leaseDurationMs, renewDeadlineMs, env } = options;
  const tls = { caFile: options.tlsCaFile, certFile: options.tlsCertFile, keyFile: options.tlsKeyFile };
  const hasTls = Object.values(tls).some((v) => v !== undefined);
  return openEtcdLock(spec, {
    name,
    identity,
    leaseDurationMs,
    renewDeadlineMs,
    ...(env !== undefined ? { env } : {}),
    ...(hasTls ? { tls } : {}),
    ...(options.etcdPasswordFile !== undefined ? { passwordFile: options.etcdPasswordFile } : {}),
  });
});

export interface EtcdLockOptions {
  /** Lease name; must be non-empty. */
  name: string;
  identity: string;
  /** The elector's leaseDuration: the record's etcd lease lives at least this long after a write. */
  leaseDurationMs: number;
  /** The elector's renewDeadline: every call times out well before it. */
  renewDeadlineMs: number;
  /** Key prefix; default the URL's path, else `leader-run/`. */
  keyPrefix?: string;
  /** Overrides the URL's user. */
  username?: string;
  password?: string;
  passwordFile?: string;
  /** Name of an environment variable holding the password (default `LEADER_RUN_ETCD_PASSWORD`). */
  passwordEnv?: string;
  /** PEM files for etcds:// (URL options `ca=`, `cert=`, `key=` otherwise). */
  tls?: EtcdTlsFiles;
  /** Bound on each gRPC call. Default: a third of the renew deadline (a write is two calls). */
  callTimeoutMs?: number;
  /** How long `openEtcdLock` waits for its first read. Default: the call timeout, at most 2 s. */
  connectWaitMs?: number;
  /** Where the password variables are read; default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Opens the etcd lock named by `spec` (`etcd://[user@]host:port[,host:port…][/key-prefix]`, or
 * `etcds://…` for TLS). Throws `EtcdConfigError` for bad settings (exit 64) and `PermanentLockError`
 * for rejected credentials or permissions (exit 69). An unreachable cluster does not throw: each
 * operation fails with `EtcdUnavailableError` until it answers.
 */
export async function openEtcdLock(spec: string | EtcdLockSpec, options: EtcdLockOptions): Promise<EtcdLock> {
  const parsed = typeof spec === "string" ? parseSpec(spec) : spec;
  if (options.name === "") throw new EtcdConfigError("the etcd lock needs a non-empty lease name");
  if (options.identity === "") throw new EtcdConfigError("the etcd lock needs a non-empty identity");
  const rd = options.renewDeadlineMs;
  if (!(options.leaseDurationMs > 0) || !(rd > 0)) {
    throw new EtcdConfigError("the etcd lock needs a positive leaseDurationMs and renewDeadlineMs");
  }
  const callTimeoutMs = options.callTimeoutMs ?? Math.max(1, Math.floor(rd / 3));
  if (!(callTimeoutMs > 0) || callTimeoutMs >= rd) {
    throw new EtcdConfigError(`the etcd call timeout (${callTimeoutMs}ms) must be positive and below the renew deadline (${rd}ms)`);
  }
  const connection = resolveConnection(parsed, options);
  const lock = new EtcdLock({
    connection,
    name: options.name,
    identity: options.identity,
    prefix: resolvePrefix(parsed, options.keyPrefix),
    leaseDurationMs: options.leaseDurationMs,
    callTimeoutMs,
    where: describeEndpoints(parsed),
  });
  try {
    await lock.connect(options.connectWaitMs ?? Math.min(callTimeoutMs, 2000));
  } catch (error) {
    await lock.close();
    throw error;
  }
  return lock;
}

function parseSpec(url: string): EtcdLockSpec {
  let spec;
  try {
    spec = parseLockUrl(url);
  } catch (error) {
    if (error instanceof LockConfigError && !(error instanceof EtcdConfigError)) throw new EtcdConfigError(error.message.replace(/^--lock /, "etcd URL "));
    throw error;
  }
  if (spec.kind !== "etcd") throw new EtcdConfigError(`not an etcd URL: ${spec.redacted} (use etcd:// or etcds://)`);
  return spec;
}
