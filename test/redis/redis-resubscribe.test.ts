/**
 * Issue #9: after a Redis restart, a server that accepts the reconnection but does not answer made
 * ioredis's automatic re-subscribe time out, and that rejection was unhandled: leader-run died with
 * exit 1. A freeze proxy makes the fault exact: every connection is reset (the restart), and the
 * reconnection is accepted but nothing is forwarded (the pause).
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { openRedisLock, redisLeaseKeys, DEFAULT_KEY_PREFIX, type RedisLock } from "../../src/locks/redis/index.js";
import { FreezeProxy } from "../support/freeze-proxy.js";
import { RedisServer, redisCommands, requireRedis } from "../support/redis-server.js";

const RD = 1000; // command timeout RD / 2

async function waitFor(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("Redis subscriber across a restart and a pause", () => {
  let server: RedisServer | undefined;
  let proxy: FreezeProxy | undefined;
  let lock: RedisLock | undefined;
  const watching = new AbortController();
  after(async () => {
    watching.abort();
    await lock?.close();
    await proxy?.close();
    await server?.kill();
  });

  test("a re-subscribe that times out neither goes unhandled nor ends notifications", async (t) => {
    if (!requireRedis(t)) return;
    server = await RedisServer.start();
    proxy = await FreezeProxy.start(server.port);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on("unhandledRejection", onUnhandled);
    t.after(() => process.off("unhandledRejection", onUnhandled));

    const name = `resub-${process.pid}`;
    lock = await openRedisLock(`redis://127.0.0.1:${proxy.port}`, { name, identity: "a", leaseDurationMs: 2000, renewDeadlineMs: RD });
    let wakes = 0;
    lock.watch(() => wakes++, watching.signal);
    const channel = redisLeaseKeys(DEFAULT_KEY_PREFIX, name).channel;
    const published = async (): Promise<number> => {
      const [reply] = await redisCommands(server?.port ?? 0, [["PUBLISH", channel, "released"]]);
      return Number(reply?.text);
    };
    // Subscribed: a publish reaches one subscriber.
    await waitFor(() => wakes > 0, 10_000, "the first subscription");
    for (let i = 0; (await published()) !== 1; i++) {
      if (i > 500) throw new Error("never subscribed");
      await new Promise((r) => setTimeout(r, 10));
    }

    // Restart (every connection reset), and the server accepts but never answers.
    proxy.freeze();
    const before = proxy.connections;
    proxy.dropAll();
    await waitFor(() => (proxy?.connections ?? 0) > 0, 10_000, "the subscriber to reconnect");
    assert.ok(before > 0);
    // Several command timeouts: any SUBSCRIBE sent on the reconnection has timed out by now.
    await new Promise((r) => setTimeout(r, 4 * (RD / 2)));
    assert.deepEqual(unhandled.map(String), []);

    // Answering again: notifications come back without anyone restarting the lock.
    proxy.thaw();
    const wakesBefore = wakes;
    for (let i = 0; ; i++) {
      if ((await published()) >= 1 && wakes > wakesBefore) break;
      if (i > 1000) throw new Error("notifications never came back after the pause");
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(unhandled.map(String), []);
  });
});
