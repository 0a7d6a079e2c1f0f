/**
 * The Kubernetes Lease lock against the test API server: compare-and-swap, error mapping, timeouts,
 * events, watch and where the configuration comes from.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  AlreadyExistsError,
  ConflictError,
  LockError,
  NotFoundError,
  PermanentLockError,
  type ResourceLock,
  type WatchHealth,
  type WatchedRecord,
} from "../../src/election/lock.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import { KubernetesConfigError, KubernetesUnavailableError } from "../../src/locks/kubernetes/errors.js";
import { openKubernetesLock, requestTimeoutMs, type KubernetesLockOptions } from "../../src/locks/kubernetes/index.js";
import type { KubernetesLockSpec } from "../../src/locks/url.js";
import { LEADER_RUN_RULES, startLeaseApiServer, type LeaseApiServer } from "../support/lease-api-server.js";

const SPEC: KubernetesLockSpec = { kind: "kubernetes", url: "kubernetes:", redacted: "kubernetes:" };
const dir = mkdtempSync(join(tmpdir(), "k8s-lock-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

let server: LeaseApiServer;
let kubeconfig: string;
const opened: ResourceLock[] = [];
before(async () => {
  server = await startLeaseApiServer();
  kubeconfig = server.writeKubeconfig(join(dir, "admin.json"));
});
after(async () => {
  await Promise.all(opened.map((l) => l.close?.()));
  await server.close();
});

let seq = 0;
async function open(over: Partial<KubernetesLockOptions> = {}): Promise<ResourceLock> {
  const lock = await openKubernetesLock(SPEC, {
    name: `lease-${seq++}`,
    identity: "me",
    leaseDurationMs: 3000,
    renewDeadlineMs: 2000,
    kubeconfig,
    env: {},
    onWarning: () => undefined,
    ...over,
  });
  opened.push(lock);
  return lock;
}

function rec(holder: string, over: Partial<LeaderElectionRecord> = {}): LeaderElectionRecord {
  const now = new Date();
  return { holderIdentity: holder, leaseDurationSeconds: 3, acquireTime: now, renewTime: now, leaderTransitions: 0, ...over };
}

const bodyOf = (verb: string, name: string): Record<string, unknown> => {
  const r = server.requests.filter((x) => x.verb === verb && (x.name === name || JSON.parse(x.body ?? "{}").metadata?.name === name)).at(-1);
  assert.ok(r?.body, `no ${verb} of ${name} recorded`);
  return JSON.parse(r.body) as Record<string, unknown>;
};

describe("Lease lock: get / create / update", () => {
  test("get of a missing Lease is NotFoundError; create makes it; a second create is AlreadyExistsError", async () => {
    const lock = await open({ name: "basic" });
    await assert.rejects(lock.get(), NotFoundError);
    await lock.create(rec("me"));
    const { record } = await lock.get();
    assert.equal(record.holderIdentity, "me");
    await assert.rejects((await open({ name: "basic", identity: "other" })).create(rec("other")), AlreadyExistsError);
  });

  test("create sends the spec client-go sends, with the managed-by label and extra labels", async () => {
    const lock = await open({ name: "wire", labels: { team: "data" } });
    const now = new Date("2024-05-01T12:00:00.250Z");
    await lock.create({ holderIdentity: "me", leaseDurationSeconds: 15, acquireTime: now, renewTime: now, leaderTransitions: 0 });
    const body = bodyOf("create", "wire");
    assert.deepEqual(body.spec, {
      holderIdentity: "me",
      leaseDurationSeconds: 15,
      acquireTime: "2024-05-01T12:00:00.250000Z",
      renewTime: "2024-05-01T12:00:00.250000Z",
      leaseTransitions: 0,
    });
    assert.deepEqual((server.getLease("default", "wire")?.metadata as Record<string, unknown>).labels, {
      "app.kubernetes.io/managed-by": "leader-run",
      team: "data",
    });
  });

  test("update is a compare-and-swap: a writer with a stale view gets ConflictError and writes nothing", async () => {
    const a = await open({ name: "cas", identity: "a" });
    const b = await open({ name: "cas", identity: "b" });
    await a.create(rec("a"));
    await b.get();
    await a.update(rec("a", { leaderTransitions: 0 }));
    await assert.rejects(b.update(rec("b", { leaderTransitions: 1 })), ConflictError);
    assert.equal((await a.get()).record.holderIdentity, "a");
    // After re-reading, b's update goes through.
    await b.get();
    await b.update(rec("b", { leaderTransitions: 1 }));
    assert.equal((await a.get()).record.holderIdentity, "b");
  });

  test("update before any get or create fails like client-go's", async () => {
    const lock = await open();
    await assert.rejects(lock.update(rec("me")), /lease not initialized, call get or create first/);
  });

  test("update keeps labels others set and the release is written as client-go writes it", async () => {
    const lock = await open({ name: "release" });
    await lock.create(rec("me", { leaderTransitions: 2 }));
    // Someone labels the Lease (kubectl label); we re-read and release.
    const served = server.getLease("default", "release") as { metadata: Record<string, unknown>; spec: Record<string, unknown> };
    server.writeLease("default", { ...served, metadata: { ...served.metadata, labels: { ...(served.metadata.labels as object), owner: "ops" } } });
    await lock.get();
    const now = new Date();
    await lock.update({ holderIdentity: "", leaseDurationSeconds: 1, acquireTime: now, renewTime: now, leaderTransitions: 2 });
    const after = server.getLease("default", "release") as { metadata: { labels: Record<string, string> }; spec: Record<string, unknown> };
    assert.equal(after.metadata.labels.owner, "ops");
    assert.equal(after.spec.holderIdentity, "");
    assert.equal(after.spec.leaseDurationSeconds, 1);
    assert.equal(after.spec.leaseTransitions, 2);
    assert.equal(bodyOf("update", "release").spec && (bodyOf("update", "release").spec as Record<string, unknown>).holderIdentity, "");
  });

  test("raw changes with every renewal, even two in the same second", async () => {
    const lock = await open({ name: "raw" });
    await lock.create(rec("me"));
    const first = await lock.get();
    const same = await lock.get();
    assert.equal(first.raw, same.raw);
    await lock.update({ ...first.record, renewTime: new Date(first.record.renewTime!.getTime() + 1) });
    assert.notEqual((await lock.get()).raw, first.raw);
  });

  test("describe is namespace/name; the namespace defaults to the kubeconfig context's, then default", async () => {
    assert.equal((await open({ name: "where" })).describe(), "default/where");
    server.addNamespace("team-a");
    const kc = server.writeKubeconfig(join(dir, "ctx-ns.json"), { namespace: "team-a" });
    assert.equal((await open({ name: "where", kubeconfig: kc })).describe(), "team-a/where");
    assert.equal((await open({ name: "where", kubeconfig: kc, namespace: "kube-system" })).describe(), "kube-system/where");
  });
});

describe("Lease lock: errors the CLI acts on", () => {
  test("401 is a PermanentLockError naming where the credentials came from", async () => {
    const kc = server.writeKubeconfig(join(dir, "bad-token.json"), { token: "nope" });
    const lock = await open({ kubeconfig: kc });
    await assert.rejects(lock.get(), (e: unknown) => {
      assert.ok(e instanceof PermanentLockError);
      assert.match(e.message, /rejected the credentials of kubeconfig .*bad-token\.json \(user "test"\) \(401 Unauthorized\)/);
      assert.ok(!e.message.includes("nope"), "the token must not appear in messages");
      return true;
    });
  });

  test("403 is a PermanentLockError naming the missing verb and resource, and how to grant it", async () => {
    server.addToken("get-only", { user: "system:serviceaccount:default:job", rules: [{ resources: ["leases"], verbs: ["get"] }] });
    const lock = await open({ name: "forbidden", kubeconfig: server.writeKubeconfig(join(dir, "get-only.json"), { token: "get-only" }) });
    await assert.rejects(lock.get(), NotFoundError);
    await assert.rejects(lock.create(rec("me")), (e: unknown) => {
      assert.ok(e instanceof PermanentLockError);
      assert.match(e.message, /forbids us to create leases\.coordination\.k8s\.io "forbidden" in namespace "default"/);
      assert.match(e.message, /cannot create resource "leases"/);
      assert.match(e.message, /verbs \["get", "create", "update", "watch"\].*examples\/kubernetes\/rbac\.yaml/);
      return true;
    });
  });

  test("a namespace that does not exist is a PermanentLockError saying so", async () => {
    const lock = await open({ namespace: "nowhere" });
    await assert.rejects(lock.get(), NotFoundError);
    await assert.rejects(lock.create(rec("me")), /namespace "nowhere" does not exist/);
  });

  test("a server error is retryable (not permanent)", async () => {
    const lock = await open();
    server.injectFailure("get", { code: 500 });
    await assert.rejects(lock.get(), (e: unknown) => e instanceof KubernetesUnavailableError && !(e instanceof PermanentLockError));
  });

  test("an unreachable API server is KubernetesUnavailableError, not permanent", async () => {
    const gone = await startLeaseApiServer();
    const kc = gone.writeKubeconfig(join(dir, "gone.json"));
    await gone.close();
    const lock = await open({ kubeconfig: kc });
    await assert.rejects(lock.get(), (e: unknown) => {
      assert.ok(e instanceof KubernetesUnavailableError);
      assert.match(e.message, /cannot reach the Kubernetes API server https:\/\/127\.0\.0\.1:\d+ to get .*ECONNREFUSED/);
      return true;
    });
  });

  test("a server certificate that does not verify is a PermanentLockError pointing at the CA", async () => {
    const kc = join(dir, "no-ca.json");
    writeFileSync(
      kc,
      JSON.stringify({
        apiVersion: "v1",
        kind: "Config",
        clusters: [{ name: "c", cluster: { server: server.url } }],
        users: [{ name: "u", user: { token: "admin-token" } }],
        contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
        "current-context": "x",
      }),
    );
    const lock = await open({ kubeconfig: kc });
    await assert.rejects(lock.get(), (e: unknown) => {
      assert.ok(e instanceof PermanentLockError);
      assert.match(e.message, /cannot verify the TLS certificate .*UNABLE_TO_VERIFY_LEAF_SIGNATURE.*check certificate-authority/);
      return true;
    });
  });

  test("each request times out below the renew deadline", async () => {
    assert.equal(requestTimeoutMs(10_000), 5000);
    assert.equal(requestTimeoutMs(1200), 1000);
    assert.ok(requestTimeoutMs(600) < 600);
    const lock = await open({ renewDeadlineMs: 1200 });
    server.setOutage("hang");
    try {
      const start = performance.now();
      await assert.rejects(lock.get(), (e: unknown) => e instanceof KubernetesUnavailableError && /in time/.test(e.message));
      const took = performance.now() - start;
      assert.ok(took >= 900 && took < 1200 + 1500, `took ${took}ms`);
    } finally {
      server.setOutage(undefined);
    }
  });

  test("a cancelled call rejects promptly", async () => {
    const lock = await open();
    server.setOutage("hang");
    try {
      const ac = new AbortController();
      const start = performance.now();
      const p = lock.get(ac.signal);
      setTimeout(() => ac.abort(), 100);
      await assert.rejects(p, LockError);
      assert.ok(performance.now() - start < 900);
    } finally {
      server.setOutage(undefined);
    }
  });
});

describe("Lease lock: events", () => {
  test("became leader / stopped leading are recorded on the Lease as client-go records them", async () => {
    const lock = await open({ name: "evented", identity: "pod-1_abc" });
    await lock.create(rec("pod-1_abc"));
    lock.recordEvent("became leader");
    lock.recordEvent("stopped leading");
    await lock.close?.();
    const lease = server.getLease("default", "evented") as { metadata: { uid: string } };
    const events = server.events("default").filter((e) => (e.involvedObject as { name: string }).name === "evented");
    assert.deepEqual(
      events.map((e) => `${String(e.type)} ${String(e.reason)} ${String(e.message)}`),
      ["Normal LeaderElection pod-1_abc became leader", "Normal LeaderElection pod-1_abc stopped leading"],
    );
    const e = events[0] as Record<string, unknown>;
    assert.deepEqual(
      { ...(e.involvedObject as Record<string, unknown>), resourceVersion: undefined },
      { kind: "Lease", apiVersion: "coordination.k8s.io/v1", namespace: "default", name: "evented", uid: lease.metadata.uid, resourceVersion: undefined },
    );
    assert.match(String((e.metadata as { name: string }).name), /^evented\.[0-9a-f]+$/);
    assert.equal((e.source as { component: string }).component, "leader-run");
    assert.equal(e.count, 1);
  });

  test("when events are forbidden there is one warning and the lock carries on", async () => {
    server.addToken("no-events", { user: "u", rules: [LEADER_RUN_RULES[0]!] });
    const warnings: string[] = [];
    const lock = await open({
      name: "quiet",
      kubeconfig: server.writeKubeconfig(join(dir, "no-events.json"), { token: "no-events" }),
      onWarning: (m) => warnings.push(m),
    });
    await lock.create(rec("me"));
    lock.recordEvent("became leader");
    await new Promise((r) => setTimeout(r, 500));
    lock.recordEvent("stopped leading");
    await lock.get();
    await lock.close?.();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? "", /cannot record events on Lease default\/quiet \(403 Forbidden\); leader election works without them/);
  });
});

describe("Lease lock: watch", () => {
  test("a change by another writer is noticed at once; after abort nothing more is reported", async () => {
    const lock = await open({ name: "watched" });
    const other = await open({ name: "watched", identity: "other" });
    await other.create(rec("other"));
    const ac = new AbortController();
    let changes = 0;
    let wake: (() => void) | undefined;
    lock.watch!(() => {
      changes++;
      wake?.();
    }, ac.signal);
    const next = (): Promise<void> => new Promise((r) => (wake = r));
    await next(); // the synthetic ADDED of the current state
    const before = changes;
    const changed = next();
    await other.get();
    await other.update(rec("other"));
    await changed;
    assert.ok(changes > before);
    ac.abort();
    await new Promise((r) => setTimeout(r, 100));
    const atAbort = changes;
    await other.get();
    await other.update(rec("other"));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(changes, atAbort);
  });

  test("health is connected while the watch is open; a renewal comes with the record as get returns it", async () => {
    const lock = await open({ name: "watched-health" });
    const other = await open({ name: "watched-health", identity: "other" });
    await other.create(rec("other"));
    const ac = new AbortController();
    const seen: WatchedRecord[] = [];
    let health: WatchHealth | undefined;
    let wakes = 0;
    let notify: (() => void) | undefined;
    lock.watch!(
      (r) => {
        if (r === undefined) wakes++;
        else seen.push(r);
        notify?.();
      },
      ac.signal,
      (h) => (health = h),
    );
    const next = (): Promise<void> => new Promise((r) => (notify = r));
    await next(); // the synthetic ADDED of the current state: a wake-up
    assert.equal(health, "connected");
    assert.equal(wakes, 1);
    const renewed = next();
    await other.get();
    await other.update({ ...rec("other"), renewTime: new Date(Date.now() + 1000) });
    await renewed;
    const read = await lock.get();
    assert.equal(seen.at(-1)?.raw, read.raw);
    assert.deepEqual(seen.at(-1)?.record, read.record);
    ac.abort();
  });

  test("the watch comes back after the API server dropped it and then stopped answering", async () => {
    const lock = await open({ name: "rewatched", renewDeadlineMs: 1200 });
    const other = await open({ name: "rewatched", identity: "other" });
    await other.create(rec("other"));
    const ac = new AbortController();
    let changes = 0;
    lock.watch!(() => changes++, ac.signal);
    try {
      await waitForValue(() => changes > 0, 5000, "the first notification");
      server.setOutage("reset"); // drops the open watch
      await new Promise((r) => setTimeout(r, 400));
      server.setOutage("hang"); // reconnects now hang until the response timeout
      await new Promise((r) => setTimeout(r, 1500));
      server.setOutage(undefined);
      await new Promise((r) => setTimeout(r, 2500)); // at most one backoff plus one response timeout
      const before = changes;
      await other.get();
      await other.update(rec("other"));
      await waitForValue(() => changes > before, 6000, "a notification after the outage");
    } finally {
      server.setOutage(undefined);
      ac.abort();
    }
  });

  test("a forbidden watch warns once and the lock works without it", async () => {
    server.addToken("no-watch", { user: "u", rules: [{ resources: ["leases"], verbs: ["get", "create", "update"] }] });
    const warnings: string[] = [];
    const lock = await open({
      name: "unwatched",
      kubeconfig: server.writeKubeconfig(join(dir, "no-watch.json"), { token: "no-watch" }),
      onWarning: (m) => warnings.push(m),
    });
    const ac = new AbortController();
    lock.watch!(() => undefined, ac.signal);
    lock.watch!(() => undefined, ac.signal);
    await lock.create(rec("me"));
    await new Promise((r) => setTimeout(r, 600));
    ac.abort();
    assert.equal(warnings.length, 1);
    assert.match(warnings[0] ?? "", /cannot watch Lease default\/unwatched \(403/);
  });
});

describe("Lease lock: configuration", () => {
  test("in a pod: the service account's token, CA and namespace", async () => {
    server.addNamespace("pods");
    server.addToken("sa-token", { user: "system:serviceaccount:pods:leader-run", rules: LEADER_RUN_RULES });
    const root = join(dir, "pod");
    const env = server.writeServiceAccount(root, { token: "sa-token", namespace: "pods" });
    const lock = await open({ name: "in-cluster", kubeconfig: undefined, env, inClusterRoot: root });
    assert.equal(lock.describe(), "pods/in-cluster");
    await lock.create(rec("me"));
    assert.equal(server.requests.at(-1)?.user, "system:serviceaccount:pods:leader-run");
    // --namespace wins over the service account's.
    assert.equal((await open({ name: "x", kubeconfig: undefined, env, inClusterRoot: root, namespace: "default" })).describe(), "default/x");
  });

  test("--kubeconfig wins over the service account", async () => {
    const root = join(dir, "pod2");
    const env = server.writeServiceAccount(root, { token: "sa-token", namespace: "pods" });
    const lock = await open({ name: "explicit", env, inClusterRoot: root });
    assert.equal(lock.describe(), "default/explicit");
  });

  test("KUBECONFIG, then ~/.kube/config", async () => {
    server.addNamespace("from-env");
    server.addNamespace("from-home");
    const viaEnv = server.writeKubeconfig(join(dir, "env.json"), { namespace: "from-env" });
    const home = join(dir, "home");
    server.writeKubeconfig(join(home, ".kube", "config"), { namespace: "from-home" });
    assert.equal((await open({ name: "a", kubeconfig: undefined, env: { KUBECONFIG: viaEnv, HOME: home } })).describe(), "from-env/a");
    assert.equal((await open({ name: "a", kubeconfig: undefined, env: { HOME: home } })).describe(), "from-home/a");
    const lock = await open({ name: "home-works", kubeconfig: undefined, env: { HOME: home } });
    await lock.create(rec("me"));
  });

  test("no configuration at all is a KubernetesConfigError telling how to fix it", async () => {
    const home = join(dir, "empty-home");
    mkdirSync(home, { recursive: true });
    await assert.rejects(open({ kubeconfig: undefined, env: { HOME: home } }), (e: unknown) => {
      assert.ok(e instanceof KubernetesConfigError);
      assert.match(e.message, /no Kubernetes configuration found.*pass --kubeconfig/);
      return true;
    });
    await assert.rejects(open({ kubeconfig: join(dir, "missing.yaml") }), /cannot load kubeconfig .*missing\.yaml: no such file/);
    const broken = join(dir, "broken.yaml");
    writeFileSync(broken, "clusters: [");
    await assert.rejects(open({ kubeconfig: broken }), KubernetesConfigError);
  });

  test("names and namespaces Kubernetes would refuse are KubernetesConfigErrors up front", async () => {
    await assert.rejects(open({ name: "Not_Valid" }), /lease name "Not_Valid" is not a valid Kubernetes object name/);
    await assert.rejects(open({ namespace: "Bad.NS" }), /namespace "Bad.NS" is not a valid Kubernetes namespace/);
  });

  test("a plain-HTTP API server (kubectl proxy) works without insecure-skip-tls-verify", async () => {
    const plain = await startLeaseApiServer({ tls: false });
    try {
      const kc = plain.writeKubeconfig(join(dir, "plain.json"), { insecure: false });
      const lock = await open({ name: "proxy", kubeconfig: kc });
      await lock.create(rec("me"));
      assert.equal((await lock.get()).record.holderIdentity, "me");
      await lock.close?.();
    } finally {
      await plain.close();
    }
  });
});

async function waitForValue(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
