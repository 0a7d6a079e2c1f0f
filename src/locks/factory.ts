import type { ResourceLock } from "../election/lock.js";
import { BackendUnavailableError, UsageError } from "../cli/errors.js";
import type { LockSpec } from "./url.js";

/**
 * Opens the lock a `--lock` spec names. Each backend is loaded with a dynamic `import()` only when
 * chosen: leader-run starts on every cron run, and the file lock must not pay for loading ioredis or
 * the Kubernetes client (hundreds of milliseconds).
 */

export interface OpenLockOptions {
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  /** Kubernetes only. */
  namespace?: string;
  kubeconfig?: string;
  /** Where backends read secret variables (e.g. LEADER_RUN_REDIS_PASSWORD); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** PostgreSQL only: `[schema.]table`. */
  pgTable?: string;
  /** Backend facts worth one log line (e.g. which hand-over signal is in use). */
  onInfo?: (message: string) => void;
  /** Non-fatal backend problems (e.g. events forbidden), for the caller's log. */
  onWarning?: (message: string) => void;
}

/**
 * @throws UsageError (exit 64) for settings the backend rejects (its config errors are converted),
 *   PermanentLockError (exit 69) when the backend refuses us for good.
 */
export async function openLock(spec: LockSpec, options: OpenLockOptions): Promise<ResourceLock> {
  try {
    return await open(spec, options);
  } catch (e) {
    // Backends report bad settings with their own config error classes; for the CLI they are usage errors.
    if (e instanceof Error && CONFIG_ERRORS.has(e.name) && !(e instanceof UsageError)) {
      throw new UsageError(`--lock ${spec.redacted}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}

const CONFIG_ERRORS = new Set(["FileLockConfigError", "RedisConfigError", "KubernetesConfigError", "PostgresConfigError", "ConfigError"]);

async function open(spec: LockSpec, options: OpenLockOptions): Promise<ResourceLock> {
  switch (spec.kind) {
    case "file": {
      const { FileLock } = await import("./file.js");
      const fileOptions: ConstructorParameters<typeof FileLock>[0] = {
        name: options.name,
        identity: options.identity,
        leaseDurationMs: options.leaseDurationMs,
      };
      if (spec.dir !== undefined) fileOptions.dir = spec.dir;
      return new FileLock(fileOptions);
    }
    case "redis": {
      const { openRedisLock } = await import("./redis.js");
      const { name, identity, leaseDurationMs, renewDeadlineMs, env } = options;
      return await openRedisLock(spec.url, { name, identity, leaseDurationMs, renewDeadlineMs, env });
    }
    case "kubernetes": {
      const { openKubernetesLock } = await import("./kubernetes.js");
      const { name, identity, leaseDurationMs, renewDeadlineMs, namespace, kubeconfig, env, onWarning } = options;
      return await openKubernetesLock(spec, { name, identity, leaseDurationMs, renewDeadlineMs, namespace, kubeconfig, env, onWarning });
    }
    case "etcd":
      throw new BackendUnavailableError("etcd");
    case "postgres": {
      const { openPostgresLock } = await import("./postgres/index.js");
      const { name, identity, leaseDurationMs, renewDeadlineMs, env, pgTable, onInfo, onWarning } = options;
      return await openPostgresLock(spec.url, { name, identity, leaseDurationMs, renewDeadlineMs, env, table: pgTable, onInfo, onWarning });
    }
  }
}
