import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, afterEach, before, beforeEach, describe, test, type TestContext } from "node:test";
import { hasEtcd, requireEtcd, startEtcd, type EtcdCluster } from "../support/etcd-server.js";
import { startLeaseApiServer, type LeaseApiServer } from "../support/lease-api-server.js";
import { PG_BIN, requirePostgres, startPostgres, type PgServer } from "../support/postgres-server.js";
import { hasRedis, RedisServer, requireRedis } from "../support/redis-server.js";
import { E2E, leftovers, marker, overlapSampler, waitFor } from "./support.js";

/**
 * Issue #14: `leader-run step-down` and `leader-run status --watch` with the real CLI on every backend,
 * against real servers the tests start (the Kubernetes one is the project's own Lease API server). One
 * test per behaviour, run over the backends.
 */

interface Backend {
  name: string;
  /** False (after skipping the test, or throwing under CI=true) when its server cannot run here. */
  available(t: TestContext): boolean;
  /** Whether its server's binaries are here (else its tests skip, or fail under CI=true). */
  installed(): boolean;
  /** Starts the server once for the backend's tests. */
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The flags naming a lock of this backend; `work` is the test's own directory. */
  flags(work: string): string[];
}

let redis: RedisServer | undefined;
let etcd: EtcdCluster | undefined;
let pg: PgServer | undefined;
let k8s: LeaseApiServer | undefined;

const BACKENDS: Backend[] = [
  { name: "file", available: () => true, installed: () => true, start: async () => undefined, stop: async () => undefined, flags: (work) => ["--lock", `file:${join(work, "lock")}`] },
  {
    name: "redis",
    available: (t) => requireRedis(t),
    installed: hasRedis,
    start: async () => void (redis = await RedisServer.start()),
    stop: async () => redis?.stop(),
    flags: () => ["--lock", redis?.url ?? "redis://not-started"],
  },
  {
    name: "etcd",
    available: (t) => requireEtcd(t),
    installed: hasEtcd,
    start: async () => void (etcd = await startEtcd()),
    stop: async () => etcd?.stop(),
    flags: () => ["--lock", etcd?.url ?? "etcd://not-started"],
  },
  {
    name: "postgres",
    available: (t) => requirePostgres(t),
    installed: () => PG_BIN !== undefined,
    start: async () => void (pg = await startPostgres()),
    stop: async () => pg?.stop(),
    // The password in a passfile: in the URL it draws a warning on every run (the process list shows it).
    flags: (work) => {
      const url = new URL(pg?.url ?? "postgres://not-started");
      const passfile = join(work, "pgpass");
      writeFileSync(passfile, `*:*:*:${url.username}:${decodeURIComponent(url.password)}\n`, { mode: 0o600 });
      url.password = "";
      url.searchParams.set("passfile", passfile);
      return ["--lock", url.toString()];
    },
  },
  {
    name: "kubernetes",
    available: () => true,
    installed: () => true,
    start: async () => void (k8s = await startLeaseApiServer()),
    stop: async () => k8s?.close(),
    flags: (work) => ["--lock", "kubernetes:", "--namespace", "default", "--kubeconfig", k8s?.writeKubeconfig(join(work, "kubeconfig.json")) ?? "not-started"],
  },
];

after(() => {
  assert.deepEqual(leftovers(), [], "processes left behind");
});

/** Roomier than the file-only tests' timings: five servers and their clients share a loaded machine. */
const TIMING = ["--lease-duration", "8s", "--renew-deadline", "5s", "--retry-period", "500ms", "--kill-grace", "1s"];

for (const backend of BACKENDS) {
  describe(`${backend.name}: step-down and status --watch`, () => {
    let h: E2E | undefined;
    // A missing server skips (or, under CI=true, fails) each test below.
    before(async () => {
      if (backend.installed()) await backend.start();
    });
    after(() => backend.stop());
    beforeEach(() => {
      h = undefined;
    });
    afterEach(async () => {
      if (h) assert.deepEqual(await h.cleanup(), [], "the test left processes behind");
    });

    const world = async (t: TestContext): Promise<E2E | undefined> => {
      if (!backend.available(t)) return undefined;
      h = await E2E.create((work) => backend.flags(work));
      return h;
    };

    test("a hand-over requested with step-down: the old child is gone before the new one starts (0 overlap), the old leader exits 0", async (t) => {
      const w = await world(t);
      if (!w) return;
      const ma = marker();
      const mb = marker();
      const a = w.run("e2e-a", w.child("e2e-a", ma), [], TIMING);
      const startA = await w.waitForChildEvent("e2e-a's child to start", (e) => e.kind === "start" && e.tag === "e2e-a", 30_000);
      const b = w.run("e2e-b", w.child("e2e-b", mb), [], TIMING);
      await b.waitForStandby(30_000).catch((error: unknown) => {
        throw new Error(`${(error as Error).message}\nthe leader: ${a}`);
      });
      const sampler = overlapSampler([ma, mb]);
      await waitFor("the sampler to see e2e-a's child", () => sampler.seen.has(ma));
      // Generous: loading a backend's client on a loaded machine takes seconds before the request is even sent.
      const step = await w.oneShot("step-down", [], 60_000);
      assert.equal(step.code, 0, `${step.stdout}${step.stderr}`);
      assert.match(step.stdout, new RegExp(`^e2e-a handed lease ${w.name} over; e2e-b leads now \\(term \\d+\\)\\n$`));
      assert.equal(await a.exitCode(30_000), 0, `${a}`);
      assert.ok(a.logs().some((l) => l.event === "handing_over"), a.stderr);
      const startB = await w.waitForChildEvent("e2e-b's child to start", (e) => e.kind === "start" && e.tag === "e2e-b", 30_000);
      await waitFor("the sampler to see e2e-b's child", () => sampler.seen.has(mb));
      const { overlaps } = await sampler.stop();
      assert.deepEqual(overlaps, [], "both children were alive at once");
      const stopA = (await w.childEvents()).find((e) => e.kind === "stop" && e.pid === startA.pid);
      assert.ok(stopA, "e2e-a's child was not stopped with its signal");
      assert.ok(stopA.ms < startB.ms, `e2e-b's child started ${stopA.ms - startB.ms} ms before e2e-a's stopped`);
      b.signal("SIGTERM");
      assert.equal(await b.exitCode(30_000), 0, `${b}`);
    });

    test("status --watch prints one JSON object per change of holder until interrupted", async (t) => {
      const w = await world(t);
      if (!w) return;
      const watcher = w.spawn("watch", ["status", ...w.lockArgs, "--name", w.name, "--watch", "--output", "json"]);
      const states = (): { state: string; holder: string | null }[] =>
        watcher.stdout
          .split("\n")
          .filter((l) => l.startsWith("{"))
          .map((l) => JSON.parse(l) as { state: string; holder: string | null });
      await waitFor("the first status line", () => states().length >= 1, 30_000);
      const a = w.run("e2e-a", w.child("e2e-a", marker()), [], TIMING);
      await waitFor("the watcher to see e2e-a", () => states().some((s) => s.holder === "e2e-a"), 30_000);
      await w.waitForChildEvent("e2e-a's child to start", (e) => e.kind === "start", 30_000);
      a.signal("SIGTERM");
      assert.equal(await a.exitCode(30_000), 0, `${a}`);
      // Released: a record without holder, or (where releasing deletes it) no record at all.
      const free = (s: { state: string } | undefined): boolean => s?.state === "released" || s?.state === "absent";
      await waitFor("the watcher to see the release", () => states().length >= 3 && free(states().at(-1)), 30_000);
      watcher.signal("SIGINT");
      assert.equal(await watcher.exitCode(), 0, `${watcher}`);
      const seen = states().map((s) => `${s.state}:${s.holder ?? ""}`);
      assert.equal(seen.length, 3, `one line per change, no line per renewal: ${seen.join(", ")}`);
      assert.deepEqual(seen.slice(0, 2), ["absent:", "live:e2e-a"]);
      assert.ok(free(states()[2]), seen.join(", "));
      assert.equal(watcher.stderr, "");
    });
  });
}
