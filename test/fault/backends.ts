/**
 * Backend adapters of the fault campaigns. An adapter says whether its server can run here, starts one
 * (real server, loopback, temp dir), gives the `--lock` URL the candidates use, and adds the server's
 * own faults as rows of the fault table.
 *
 * Adding a backend is one more adapter in BACKENDS:
 *   - `unavailable()`: why it cannot run here (binary missing), or undefined;
 *   - `start(workDir)`: start the server(s) the way the backend's own tests do, return the lock URL,
 *     `faults` (e.g. etcd: SIGKILL a member and restart it, SIGSTOP the leader member; PostgreSQL:
 *     restart, SIGSTOP the postmaster, `pg_terminate_backend` of the candidates' sessions) and `stop()`;
 * and its name in the `--backend` choices of bench/fault-campaign.ts.
 */
import { join } from "node:path";
import { hasEtcd, startEtcd } from "../support/etcd-server.js";
import { PG_BIN, startPostgres } from "../support/postgres-server.js";
import { REDIS_CLI, REDIS_SERVER, RedisServer, rawCommand } from "../support/redis-server.js";
import type { FaultSpec } from "./faults.js";

export interface BackendServer {
  lockUrl: string;
  faults: readonly FaultSpec[];
  stop(): Promise<void>;
}

export interface BackendAdapter {
  name: string;
  unavailable(): string | undefined;
  start(workDir: string): Promise<BackendServer>;
}

export const fileBackend: BackendAdapter = {
  name: "file",
  unavailable: () => undefined,
  async start(workDir) {
    return { lockUrl: `file:${join(workDir, "lock")}`, faults: [], stop: async () => undefined };
  },
};

export const redisBackend: BackendAdapter = {
  name: "redis",
  unavailable: () => (REDIS_SERVER === undefined || REDIS_CLI === undefined ? "redis-server not installed: apt-get install redis-server" : undefined),
  async start() {
    // The README's advice for production: every write on disk before it is acknowledged.
    const server = await RedisServer.start({ aof: true, config: ["maxmemory-policy noeviction"] });
    const faults: FaultSpec[] = [
      {
        kind: "redis-kill-restart",
        description: "SIGKILL redis-server (AOF, appendfsync always), restart it 0.2..2 s later on the same port and data",
        needsLeader: false,
        async apply(ctx) {
          const pid = server.pid;
          await server.kill();
          const ms = ctx.rng.int(200, 2000);
          await ctx.sleep(ms);
          await server.startAgain();
          return `redis-server ${pid ?? "?"} down ${ms} ms`;
        },
      },
      {
        kind: "redis-stop",
        description: "SIGSTOP redis-server for RD + 0.3..1.5 s, then SIGCONT",
        needsLeader: false,
        async apply(ctx) {
          const ms = ctx.timing.renewDeadlineMs + ctx.rng.int(300, 1500);
          server.pause();
          try {
            await ctx.sleep(ms);
          } finally {
            server.resume();
          }
          return `redis-server ${server.pid ?? "?"} stopped ${ms} ms`;
        },
      },
      {
        kind: "redis-client-pause",
        description: "CLIENT PAUSE RD + 0.3..1.5 s ALL",
        needsLeader: false,
        async apply(ctx) {
          const ms = ctx.timing.renewDeadlineMs + ctx.rng.int(300, 1500);
          const reply = await rawCommand(server.port, `CLIENT PAUSE ${ms} ALL`, 5000);
          if (!reply.startsWith("+OK")) throw new Error(`CLIENT PAUSE: ${reply.trim()}`);
          await ctx.sleep(ms);
          return `paused ${ms} ms`;
        },
      },
    ];
    return {
      lockUrl: server.url,
      faults,
      async stop() {
        await server.kill();
      },
    };
  },
};

export const etcdBackend: BackendAdapter = {
  name: "etcd",
  unavailable: () => (hasEtcd() ? undefined : "etcd/etcdctl not installed: apt-get install etcd-server etcd-client"),
  async start() {
    // One member: a kill or a stop takes the whole store away, the harshest case for the candidates.
    const cluster = await startEtcd();
    const member = cluster.members[0];
    if (member === undefined) throw new Error("startEtcd gave no member");
    const faults: FaultSpec[] = [
      {
        kind: "etcd-kill-restart",
        description: "SIGKILL the etcd member, restart it from its data dir 0.2..2 s later on the same ports",
        needsLeader: false,
        async apply(ctx) {
          const pid = member.process?.pid;
          await member.kill();
          const ms = ctx.rng.int(200, 2000);
          await ctx.sleep(ms);
          await cluster.restart(0);
          return `etcd ${pid ?? "?"} down ${ms} ms`;
        },
      },
      {
        kind: "etcd-stop",
        description: "SIGSTOP the etcd member for RD + 0.3..1.5 s, then SIGCONT",
        needsLeader: false,
        async apply(ctx) {
          const ms = ctx.timing.renewDeadlineMs + ctx.rng.int(300, 1500);
          await member.pause();
          try {
            await ctx.sleep(ms);
          } finally {
            member.resume();
          }
          return `etcd ${member.process?.pid ?? "?"} stopped ${ms} ms`;
        },
      },
    ];
    return { lockUrl: cluster.url, faults, stop: () => cluster.stop() };
  },
};

export const postgresBackend: BackendAdapter = {
  name: "postgres",
  unavailable: () => (PG_BIN === undefined ? "PostgreSQL server binaries not found: apt-get install postgresql" : undefined),
  async start() {
    const server = await startPostgres();
    const faults: FaultSpec[] = [
      {
        kind: "pg-restart",
        description: "fast shutdown of PostgreSQL (every session ends) and start again on the same port and data dir",
        needsLeader: false,
        async apply() {
          const pid = server.pid;
          await server.restart();
          return `postgres ${pid} restarted`;
        },
      },
      {
        kind: "pg-stop",
        description: "SIGSTOP the postmaster and every backend for RD + 0.3..1.5 s, then SIGCONT",
        needsLeader: false,
        async apply(ctx) {
          const ms = ctx.timing.renewDeadlineMs + ctx.rng.int(300, 1500);
          server.pause();
          try {
            await ctx.sleep(ms);
          } finally {
            server.resume();
          }
          return `postgres ${server.pid} stopped ${ms} ms`;
        },
      },
      {
        kind: "pg-terminate",
        description: "pg_terminate_backend of every session with application_name 'leader-run' (all candidates)",
        needsLeader: false,
        async apply() {
          const rows = await server.psql("SELECT count(*)::int AS n FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'leader-run' AND pid <> pg_backend_pid()) t");
          return `${String(rows[0]?.n ?? 0)} sessions terminated`;
        },
      },
    ];
    return { lockUrl: server.url, faults, stop: () => server.stop() };
  },
};

export const BACKENDS: Readonly<Record<string, BackendAdapter>> = { file: fileBackend, redis: redisBackend, etcd: etcdBackend, postgres: postgresBackend };
