// The servers the bench measures against, started exactly as the tests start them (real servers on
// loopback, random ports, temp dirs). Adding a backend is one entry in BACKENDS.
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { hasRedis, RedisServer } from "../test/support/redis-server.js";
import { startLeaseApiServer } from "../test/support/lease-api-server.js";
import { hasEtcd, startEtcd } from "../test/support/etcd-server.js";
import { PG_BIN, startPostgres } from "../test/support/postgres-server.js";

export interface StartedBackend {
  /** `--lock …` and any backend options. */
  lockArgs: string[];
  env?: NodeJS.ProcessEnv;
  /** A peer tool's own "try once" on a held lock, for the --no-wait comparison. */
  referenceNoWait?: { name: string; cmd: string[]; status: number };
  /** Total operations the server has served so far (for operations per second). */
  operations?: () => Promise<number>;
  stop(): Promise<void>;
}

export interface BenchBackend {
  name: string;
  /** Why it cannot run here, or undefined. */
  unavailable(): string | undefined;
  start(work: string): Promise<StartedBackend>;
}

function has(binary: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${binary}`]).status === 0;
}

export const BACKENDS: BenchBackend[] = [
  {
    name: "file",
    unavailable: () => undefined,
    async start(work) {
      const dir = mkdtempSync(join(work, "file-"));
      return { lockArgs: ["--lock", `file:${dir}`], stop: async () => undefined };
    },
  },
  {
    name: "redis",
    unavailable: () => (hasRedis() ? undefined : "redis-server not installed"),
    async start() {
      const server = await RedisServer.start();
      // Every lock operation is one script (EVALSHA, or EVAL after a NOSCRIPT); total_commands_processed
      // would also count the GETs and SETs each script runs inside the server.
      const info = async (): Promise<number> => {
        const text = await server.cli(["INFO", "commandstats"]);
        let total = 0;
        for (const m of text.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)) total += Number(m[1]);
        return total;
      };
      return {
        lockArgs: ["--lock", `redis://127.0.0.1:${server.port}`],
        referenceNoWait: has("redis-cli")
          ? { name: "redis-cli SET NX", cmd: ["redis-cli", "-p", String(server.port), "SET", "bench-ref", "x", "NX", "PX", "60000"], status: 0 }
          : undefined,
        operations: info,
        stop: () => server.stop(),
      };
    },
  },
  {
    name: "etcd",
    unavailable: () => (hasEtcd() ? undefined : "etcd/etcdctl not installed"),
    async start() {
      const cluster = await startEtcd();
      // gRPC calls the server has completed, from its Prometheus endpoint (plain HTTP, so our own
      // probe is not counted).
      const handled = async (): Promise<number> => {
        const text = await (await fetch(`http://${cluster.endpoints[0]}/metrics`)).text();
        let total = 0;
        for (const m of text.matchAll(/^grpc_server_handled_total\{[^}]*\} (\S+)$/gm)) total += Number(m[1]);
        return total;
      };
      return {
        lockArgs: ["--lock", cluster.url],
        operations: handled,
        stop: () => cluster.stop(),
      };
    },
  },
  {
    name: "postgres",
    unavailable: () => (PG_BIN === undefined ? "PostgreSQL server binaries not found" : undefined),
    async start() {
      // Two connections per candidate (the lock's and LISTEN); statements counted by pg_stat_statements,
      // which counts each one as it ends (pg_stat_database's transaction counts are flushed lazily).
      const server = await startPostgres({ settings: ["max_connections=200", "shared_preload_libraries=pg_stat_statements"] });
      await server.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
      const statements = async (): Promise<number> => {
        const [row] = await server.psql(
          "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_statements WHERE query LIKE '%leader_run_leases%' AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'LISTEN%'",
        );
        return Number(row?.n);
      };
      return {
        // The password through the environment, as a user would, rather than in the URL.
        lockArgs: ["--lock", `postgres://postgres@127.0.0.1:${server.port}/postgres`],
        env: { PGPASSWORD: server.superPassword },
        operations: statements,
        stop: () => server.stop(),
      };
    },
  },
  {
    name: "kubernetes",
    unavailable: () => undefined,
    async start(work) {
      const server = await startLeaseApiServer();
      const kubeconfig = server.writeKubeconfig(join(mkdtempSync(join(work, "k8s-")), "kubeconfig.json"), {});
      return {
        lockArgs: ["--lock", "kubernetes:", "--kubeconfig", kubeconfig, "--namespace", "default"],
        operations: () => Promise.resolve(server.requests.length),
        stop: () => server.close(),
      };
    },
  },
];
