import { parseRedisUrl } from "../../src/locks/redis/url.js";
import { DEFAULT_KEY_PREFIX, redisBackend, redisCapabilities, redisLeaseKeys } from "../../src/locks/redis/index.js";
import { hasRedis, redisCommands, RedisServer, startCluster, startSentinelSetup } from "../support/redis-server.js";
import { conformance, type ConformanceTarget } from "./conformance.js";

interface Deployment {
  url: string;
  /** The servers that hold the data: frozen together. */
  dataServers: RedisServer[];
  stop(): Promise<void>;
}

function redisTarget(title: string, deploy: () => Promise<Deployment>): ConformanceTarget {
  let d: Deployment | undefined;
  let frozen = false;
  return {
    title,
    capabilities: redisCapabilities,
    async start() {
      if (!hasRedis()) return "redis-server not installed: apt-get install redis-server";
      d = await deploy();
      return undefined;
    },
    async stop() {
      await d?.stop();
    },
    open(name, identity, timing) {
      const url = d?.url ?? "";
      return redisBackend.open({ kind: "redis", target: parseRedisUrl(url), url, redacted: url }, { name, identity, ...timing, env: {} });
    },
    // SIGSTOP: the kernel still accepts connections and buffers requests; nothing answers.
    async freeze() {
      frozen = true;
      for (const s of d?.dataServers ?? []) s.pause();
    },
    async thaw() {
      if (!frozen) return;
      frozen = false;
      for (const s of d?.dataServers ?? []) s.resume();
    },
    // The lease key only: the fencing counter stays, as after an expiry or an operator's DEL.
    async deleteRecord(name) {
      const key = redisLeaseKeys(DEFAULT_KEY_PREFIX, name).lease;
      // In a Cluster only the node owning the slot deletes; the others answer MOVED.
      for (const s of d?.dataServers ?? []) await redisCommands(s.port, [["DEL", key]]);
    },
  };
}

conformance(
  redisTarget("redis (single server)", async () => {
    const server = await RedisServer.start();
    return { url: server.url, dataServers: [server], stop: () => server.kill() };
  }),
);

conformance(
  redisTarget("redis (Sentinel)", async () => {
    const setup = await startSentinelSetup();
    return { url: setup.url, dataServers: [setup.master], stop: () => setup.stop() };
  }),
);

conformance(
  redisTarget("redis (Cluster)", async () => {
    const cluster = await startCluster();
    return { url: cluster.url, dataServers: cluster.nodes, stop: () => cluster.stop() };
  }),
);
