import type { LockBackend, OpenLockOptions, OpenedLock } from "./backend.js";
import { BackendUnavailableError, LockConfigError } from "./errors.js";
import type { LockKind, LockSpec } from "./url.js";

/**
 * Every lock backend by the kind of `--lock` URL that selects it (url.ts maps schemes to kinds). Each
 * entry loads its folder with a dynamic `import()` only when chosen: leader-run starts on every cron
 * run, and the file lock must not pay for loading ioredis or the Kubernetes client (hundreds of
 * milliseconds). `undefined`: the scheme is known but its backend is not in this build.
 *
 * Adding a backend is its folder (src/locks/<kind>/index.ts) and one line here; see docs/backends.md.
 */
const BACKENDS: { [K in LockKind]: (() => Promise<LockBackend<K>>) | undefined } = {
  file: async () => (await import("./file/index.js")).fileBackend,
  redis: async () => (await import("./redis/index.js")).redisBackend,
  kubernetes: async () => (await import("./kubernetes/index.js")).kubernetesBackend,
  etcd: async () => (await import("./etcd/index.js")).etcdBackend,
  postgres: async () => (await import("./postgres/index.js")).postgresBackend,
};

/** The kinds whose backend this build has. */
export function availableKinds(): LockKind[] {
  return (Object.keys(BACKENDS) as LockKind[]).filter((kind) => BACKENDS[kind] !== undefined);
}

/**
 * Loads the backend of `kind`.
 * @throws BackendUnavailableError (a `LockConfigError`) when this build has none.
 */
export async function loadBackend<K extends LockKind>(kind: K): Promise<LockBackend<K>> {
  const load = BACKENDS[kind] as (() => Promise<LockBackend<K>>) | undefined;
  if (load === undefined) throw new BackendUnavailableError(kind);
  return load();
}

/**
 * Opens the lock a `--lock` spec names.
 * @throws LockConfigError for settings the backend rejects, its message naming the (redacted) URL;
 *   PermanentLockError when the backend refuses us for good.
 */
export async function openLock(spec: LockSpec, options: OpenLockOptions): Promise<OpenedLock> {
  const backend = await loadBackend(spec.kind);
  try {
    return await (backend as LockBackend<typeof spec.kind>).open(spec as never, options);
  } catch (e) {
    if (e instanceof LockConfigError && !e.message.startsWith("--lock ")) {
      throw new LockConfigError(`--lock ${spec.redacted}: ${e.message}`, { cause: e });
    }
    throw e;
  }
}
