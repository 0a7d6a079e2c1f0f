/**
 * The test Lease API server behaves like a Kubernetes 1.33 API server, checked through the real client
 * library (and raw HTTP where the library would reformat the bytes).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as k8s from "@kubernetes/client-node";
import { startLeaseApiServer, LEADER_RUN_RULES, type LeaseApiServer } from "../support/lease-api-server.js";
import { LEASES_PATH, rawRequest } from "../support/k8s/raw-client.js";
import { loadFixture } from "../support/k8s/fixtures.js";

const dir = mkdtempSync(join(tmpdir(), "lease-api-server-test-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function client(server: LeaseApiServer, token?: string | null, file = `kc-${Math.random()}.json`): k8s.CoordinationV1Api {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(server.writeKubeconfig(join(dir, file), { token }));
  return kc.makeApiClient(k8s.CoordinationV1Api);
}

function spec(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    holderIdentity: "a",
    leaseDurationSeconds: 15,
    acquireTime: "2024-05-01T12:00:00.000000Z",
    renewTime: "2024-05-01T12:00:00.000000Z",
    leaseTransitions: 0,
    ...over,
  };
}

function leaseBody(name: string, over: Record<string, unknown> = {}): k8s.V1Lease {
  return { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name }, spec: spec(over) as k8s.V1LeaseSpec };
}

async function apiError(p: Promise<unknown>): Promise<{ code: number; status: Record<string, unknown> }> {
  try {
    await p;
  } catch (error) {
    assert.ok(error instanceof k8s.ApiException, `expected an ApiException, got ${String(error)}`);
    const body = (error as k8s.ApiException<unknown>).body;
    return { code: (error as k8s.ApiException<unknown>).code, status: typeof body === "string" ? (JSON.parse(body) as Record<string, unknown>) : {} };
  }
  assert.fail("expected the request to fail");
}

describe("Lease API server over HTTPS, through @kubernetes/client-node", () => {
  let server: LeaseApiServer;
  let api: k8s.CoordinationV1Api;
  before(async () => {
    server = await startLeaseApiServer();
    api = client(server);
  });
  after(() => server.close());

  test("create, get, list, replace and delete a Lease", async () => {
    const created = await api.createNamespacedLease({ namespace: "default", body: leaseBody("crud") });
    assert.equal(created.metadata?.name, "crud");
    assert.equal(created.metadata?.namespace, "default");
    assert.match(created.metadata?.uid ?? "", /^[0-9a-f-]{36}$/);
    assert.match(created.metadata?.resourceVersion ?? "", /^\d+$/);
    assert.ok(created.metadata?.creationTimestamp instanceof Date);

    const read = await api.readNamespacedLease({ name: "crud", namespace: "default" });
    assert.equal(read.spec?.holderIdentity, "a");
    assert.equal(read.spec?.acquireTime as unknown, "2024-05-01T12:00:00.000000Z");

    const list = await api.listNamespacedLease({ namespace: "default" });
    assert.ok(list.items.some((l) => l.metadata?.name === "crud"));

    const replaced = await api.replaceNamespacedLease({
      name: "crud",
      namespace: "default",
      body: { ...read, spec: { ...read.spec, holderIdentity: "b" } },
    });
    assert.equal(replaced.spec?.holderIdentity, "b");
    assert.ok(Number(replaced.metadata?.resourceVersion) > Number(read.metadata?.resourceVersion));
    assert.equal(replaced.metadata?.uid, read.metadata?.uid);

    await api.deleteNamespacedLease({ name: "crud", namespace: "default" });
    assert.equal((await apiError(api.readNamespacedLease({ name: "crud", namespace: "default" }))).code, 404);
  });

  test("a missing Lease is 404 NotFound with the server's message", async () => {
    const { code, status } = await apiError(api.readNamespacedLease({ name: "nope", namespace: "default" }));
    assert.equal(code, 404);
    assert.equal(status.reason, "NotFound");
    assert.equal(status.message, 'leases.coordination.k8s.io "nope" not found');
  });

  test("creating an existing Lease is 409 AlreadyExists", async () => {
    await api.createNamespacedLease({ namespace: "default", body: leaseBody("dup") });
    const { code, status } = await apiError(api.createNamespacedLease({ namespace: "default", body: leaseBody("dup") }));
    assert.equal(code, 409);
    assert.equal(status.reason, "AlreadyExists");
  });

  test("replacing with a stale resourceVersion is 409 Conflict and changes nothing", async () => {
    const first = await api.createNamespacedLease({ namespace: "default", body: leaseBody("cas") });
    await api.replaceNamespacedLease({ name: "cas", namespace: "default", body: { ...first, spec: spec({ holderIdentity: "winner" }) as k8s.V1LeaseSpec } });
    const { code, status } = await apiError(
      api.replaceNamespacedLease({ name: "cas", namespace: "default", body: { ...first, spec: spec({ holderIdentity: "loser" }) as k8s.V1LeaseSpec } }),
    );
    assert.equal(code, 409);
    assert.equal(status.reason, "Conflict");
    assert.match(String(status.message), /the object has been modified/);
    assert.equal((await api.readNamespacedLease({ name: "cas", namespace: "default" })).spec?.holderIdentity, "winner");
  });

  test("a replace without resourceVersion is refused (Leases allow no unconditional update)", async () => {
    await api.createNamespacedLease({ namespace: "default", body: leaseBody("uncond") });
    const { code, status } = await apiError(api.replaceNamespacedLease({ name: "uncond", namespace: "default", body: leaseBody("uncond") }));
    assert.equal(code, 422);
    assert.match(String(status.message), /metadata\.resourceVersion: Invalid value: 0x0: must be specified for an update/);
  });

  test("a replace carrying the UID of a deleted Lease is 409 (UID precondition), one without creates it", async () => {
    const gone = await api.createNamespacedLease({ namespace: "default", body: leaseBody("recreate") });
    await api.deleteNamespacedLease({ name: "recreate", namespace: "default" });
    const { code, status } = await apiError(api.replaceNamespacedLease({ name: "recreate", namespace: "default", body: gone }));
    assert.equal(code, 409);
    assert.match(String(status.message), /Precondition failed: UID in precondition/);
    const res = await rawRequest(server, "PUT", `${LEASES_PATH("default")}/recreate`, { body: leaseBody("recreate") });
    assert.equal(res.status, 201);
  });

  test("a replace that changes nothing keeps the resourceVersion", async () => {
    const lease = await api.createNamespacedLease({ namespace: "default", body: leaseBody("noop") });
    const again = await api.replaceNamespacedLease({ name: "noop", namespace: "default", body: lease });
    assert.equal(again.metadata?.resourceVersion, lease.metadata?.resourceVersion);
  });

  test("a Lease in a namespace that does not exist is 404 for the namespace", async () => {
    const { code, status } = await apiError(api.createNamespacedLease({ namespace: "missing", body: leaseBody("x") }));
    assert.equal(code, 404);
    assert.equal(status.message, 'namespaces "missing" not found');
    assert.deepEqual(status.details, { name: "missing", kind: "namespaces" });
  });

  test("Lease validation: durations, transitions, strategy, preferredHolder, name (422 Invalid)", async () => {
    const cases: Array<[string, k8s.V1Lease, RegExp]> = [
      ["zero duration", leaseBody("v1", { leaseDurationSeconds: 0 }), /spec\.leaseDurationSeconds: Invalid value: 0: must be greater than 0/],
      ["negative transitions", leaseBody("v2", { leaseTransitions: -1 }), /spec\.leaseTransitions: Invalid value: -1: must be greater than or equal to 0/],
      ["preferredHolder without strategy", leaseBody("v3", { preferredHolder: "b" }), /spec\.preferredHolder: Forbidden: may only be specified if `strategy` is defined/],
      ["unknown strategy", leaseBody("v4", { strategy: "Newest" }), /Unsupported value: "Newest"/],
      ["upper-case name", leaseBody("Bad_Name"), /metadata\.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain/],
      ["bad label", { ...leaseBody("v5"), metadata: { name: "v5", labels: { "bad key": "x" } } }, /metadata\.labels: Invalid value: "bad key"/],
    ];
    for (const [what, body, message] of cases) {
      const { code, status } = await apiError(api.createNamespacedLease({ namespace: "default", body }));
      assert.equal(code, 422, what);
      assert.equal(status.reason, "Invalid", what);
      assert.match(String(status.message), message, what);
    }
    // A qualified custom strategy and a preferredHolder with it are fine.
    await api.createNamespacedLease({ namespace: "default", body: leaseBody("v6", { strategy: "example.com/mine", preferredHolder: "b" }) });
  });

  test("MicroTime must have exactly six fraction digits, as Go's time.Parse(RFC3339Micro) demands", async () => {
    const post = (name: string, acquireTime: unknown) =>
      rawRequest(server, "POST", LEASES_PATH("default"), { body: { metadata: { name }, spec: { ...spec(), acquireTime } } });
    const refused: Array<[string, string]> = [
      ["2024-05-01T12:00:00Z", 'cannot parse "Z" as ".000000"'],
      ["2024-05-01T12:00:00.123Z", 'cannot parse ".123Z" as ".000000"'],
      ["2024-05-01T12:00:00.1234567Z", 'cannot parse "7Z" as "Z07:00"'],
      ["2024-05-01T12:00:00.123456z", 'cannot parse "z" as "Z07:00"'],
      ["2024-05-01 12:00:00.123456Z", 'cannot parse " 12:00:00.123456Z" as "T"'],
      ["2024-02-30T12:00:00.123456Z", "day out of range"],
      ["2024-05-01T24:00:00.123456Z", "hour out of range"],
      ["2024-05-01T12:00:00.123456", 'cannot parse "" as "Z07:00"'],
    ];
    let n = 0;
    for (const [value, why] of refused) {
      const res = await post(`mt-bad-${n++}`, value);
      assert.equal(res.status, 400, value);
      assert.equal(res.json?.reason, "BadRequest", value);
      assert.ok(String(res.json?.message).startsWith('Lease in version "v1" cannot be handled as a Lease: parsing time'), value);
      assert.ok(String(res.json?.message).includes(why), `${value}: ${String(res.json?.message)}`);
    }
    const accepted: Array<[string, string]> = [
      ["2024-05-01T12:00:00.123456Z", "2024-05-01T12:00:00.123456Z"],
      ["2024-05-01T14:00:00.123456+02:00", "2024-05-01T12:00:00.123456Z"],
      ["2024-05-01T12:00:00,123456Z", "2024-05-01T12:00:00.123456Z"],
      ["2024-05-01T2:00:00.000000Z", "2024-05-01T02:00:00.000000Z"],
    ];
    for (const [value, printed] of accepted) {
      const res = await post(`mt-ok-${n++}`, value);
      assert.equal(res.status, 201, `${value}: ${res.text}`);
      assert.equal((res.json?.spec as Record<string, unknown>).acquireTime, printed, value);
    }
    // null leaves the field unset.
    const res = await post(`mt-ok-${n++}`, null);
    assert.equal(res.status, 201);
    assert.ok(!("acquireTime" in (res.json?.spec as Record<string, unknown>)));
  });

  test("the client library's own Date serialisation (three digits) is refused: MicroTime needs six", async () => {
    const body = leaseBody("plain-date");
    (body.spec as Record<string, unknown>).acquireTime = new Date();
    const { code, status } = await apiError(api.createNamespacedLease({ namespace: "default", body }));
    assert.equal(code, 400);
    assert.match(String(status.message), /parsing time/);
  });

  test("fields are typed as in Go: int32 from integer literals only, strings from strings", async () => {
    const bad: Array<[string, string]> = [
      ['"leaseDurationSeconds":"15"', 'cannot unmarshal string into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32'],
      ['"leaseDurationSeconds":1.5', "cannot unmarshal number 1.5 into Go struct field LeaseSpec.spec.leaseDurationSeconds of type int32"],
      ['"leaseDurationSeconds":1e3', "cannot unmarshal number 1e3"],
      ['"leaseDurationSeconds":2147483648', "cannot unmarshal number 2147483648"],
      ['"holderIdentity":7', "cannot unmarshal number into Go struct field LeaseSpec.spec.holderIdentity of type string"],
    ];
    let n = 0;
    for (const [field, why] of bad) {
      const res = await rawRequest(server, "POST", LEASES_PATH("default"), { body: `{"metadata":{"name":"typed-${n++}"},"spec":{${field}}}` });
      assert.equal(res.status, 400, field);
      assert.ok(String(res.json?.message).includes(why), `${field}: ${String(res.json?.message)}`);
    }
  });

  test("unknown and duplicate fields: a warning by default, an error with fieldValidation=Strict", async () => {
    const body = '{"metadata":{"name":"unknown-1"},"spec":{"holderIdentity":"a","holderIdentity":"b","bogus":1}}';
    const warned = await rawRequest(server, "POST", LEASES_PATH("default"), { body });
    assert.equal(warned.status, 201);
    assert.match(String(warned.headers.warning), /unknown field \\"spec\.bogus\\"/);
    assert.match(String(warned.headers.warning), /duplicate field \\"spec\.holderIdentity\\"/);
    assert.equal((warned.json?.spec as Record<string, unknown>).holderIdentity, "b");
    const strict = await rawRequest(server, "POST", `${LEASES_PATH("default")}?fieldValidation=Strict`, { body: body.replace("unknown-1", "unknown-2") });
    assert.equal(strict.status, 400);
    assert.match(String(strict.json?.message), /^strict decoding error: unknown field "spec\.bogus", duplicate field "spec\.holderIdentity"/);
  });

  test("a Lease exactly as a Go client-go program sends it is accepted", async () => {
    const lease = loadFixture("client-go-held");
    lease.metadata.name = "from-go";
    const res = await rawRequest(server, "POST", LEASES_PATH("default"), { body: lease, token: undefined });
    assert.equal(res.status, 201, res.text);
    assert.equal(res.headers.warning, undefined);
    assert.deepEqual(res.json?.spec, lease.spec);
  });

  test("no token or an unknown token is 401; a token without rights is 403 naming user, verb and resource", async () => {
    assert.equal((await rawRequest(server, "GET", `${LEASES_PATH("default")}/x`, { token: null })).status, 401);
    assert.equal((await apiError(client(server, "wrong").readNamespacedLease({ name: "x", namespace: "default" }))).code, 401);

    server.addToken("reader", { user: "system:serviceaccount:default:reader", rules: [{ resources: ["leases"], verbs: ["get"] }] });
    const reader = client(server, "reader");
    assert.equal((await apiError(reader.readNamespacedLease({ name: "x", namespace: "default" }))).code, 404);
    const { code, status } = await apiError(reader.createNamespacedLease({ namespace: "default", body: leaseBody("x") }));
    assert.equal(code, 403);
    assert.equal(status.reason, "Forbidden");
    assert.equal(
      status.message,
      'leases.coordination.k8s.io is forbidden: User "system:serviceaccount:default:reader" cannot create resource "leases" in API group "coordination.k8s.io" in the namespace "default"',
    );
    server.addToken("other-ns", { user: "u", rules: LEADER_RUN_RULES.map((r) => ({ ...r, namespaces: ["kube-system"] })) });
    assert.equal((await apiError(client(server, "other-ns").readNamespacedLease({ name: "x", namespace: "default" }))).code, 403);
  });

  test("watch streams ADDED for what exists, then MODIFIED and DELETED, filtered by name", async () => {
    await api.createNamespacedLease({ namespace: "default", body: leaseBody("watched") });
    await api.createNamespacedLease({ namespace: "default", body: leaseBody("other") });
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(server.writeKubeconfig(join(dir, "watch.json")));
    const seen: string[] = [];
    let done!: () => void;
    const finished = new Promise<void>((r) => (done = r));
    const controller = await new k8s.Watch(kc).watch(
      LEASES_PATH("default"),
      { fieldSelector: "metadata.name=watched" },
      (type, obj: k8s.V1Lease) => {
        seen.push(`${type} ${obj.metadata?.name} ${obj.spec?.holderIdentity}`);
        if (type === "DELETED") done();
      },
      () => undefined,
    );
    try {
      const current = await api.readNamespacedLease({ name: "watched", namespace: "default" });
      await api.replaceNamespacedLease({ name: "other", namespace: "default", body: { ...(await api.readNamespacedLease({ name: "other", namespace: "default" })), spec: spec({ holderIdentity: "z" }) as k8s.V1LeaseSpec } });
      await api.replaceNamespacedLease({ name: "watched", namespace: "default", body: { ...current, spec: spec({ holderIdentity: "b" }) as k8s.V1LeaseSpec } });
      await api.deleteNamespacedLease({ name: "watched", namespace: "default" });
      await finished;
    } finally {
      controller.abort();
    }
    assert.deepEqual(seen, ["ADDED watched a", "MODIFIED watched b", "DELETED watched b"]);
  });

  test("watch from a resourceVersion replays later events; one too old is 410 Expired", async () => {
    const created = await api.createNamespacedLease({ namespace: "default", body: leaseBody("replay") });
    await api.replaceNamespacedLease({ name: "replay", namespace: "default", body: { ...created, spec: spec({ holderIdentity: "b" }) as k8s.V1LeaseSpec } });
    const ac = new AbortController();
    const res = rawRequest(server, "GET", `${LEASES_PATH("default")}?watch=true&fieldSelector=metadata.name%3Dreplay&resourceVersion=${created.metadata?.resourceVersion}&timeoutSeconds=1`, {
      signal: ac.signal,
    });
    const lines = (await res).text.trim().split("\n").map((l) => JSON.parse(l) as { type: string });
    assert.deepEqual(lines.map((l) => l.type), ["MODIFIED"]);
    const old = await rawRequest(server, "GET", `${LEASES_PATH("default")}?watch=1&resourceVersion=1`);
    const event = JSON.parse(old.text.trim()) as { type: string; object: { code: number; reason: string } };
    assert.equal(event.type, "ERROR");
    assert.equal(event.object.code, 410);
  });
});

describe("Lease API server faults and plain HTTP", () => {
  test("over plain HTTP with an insecure kubeconfig the client library works the same", async () => {
    const server = await startLeaseApiServer({ tls: false });
    try {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const api = client(server);
      await api.createNamespacedLease({ namespace: "default", body: leaseBody("plain") });
      assert.equal((await api.readNamespacedLease({ name: "plain", namespace: "default" })).spec?.holderIdentity, "a");
    } finally {
      await server.close();
    }
  });

  test("latency delays answers; outages hang, reset or answer 503 until cleared", async () => {
    const server = await startLeaseApiServer();
    try {
      const api = client(server);
      await api.createNamespacedLease({ namespace: "default", body: leaseBody("f") });

      server.setLatency(400, ["get"]);
      let start = performance.now();
      await api.readNamespacedLease({ name: "f", namespace: "default" });
      assert.ok(performance.now() - start >= 380);
      server.setLatency(0);

      server.setOutage("unavailable");
      assert.equal((await apiError(api.readNamespacedLease({ name: "f", namespace: "default" }))).code, 503);

      server.setOutage("reset");
      await assert.rejects(api.readNamespacedLease({ name: "f", namespace: "default" }), /ECONNRESET|socket hang up/);

      server.setOutage("hang");
      start = performance.now();
      await assert.rejects(rawRequest(server, "GET", `${LEASES_PATH("default")}/f`, { signal: AbortSignal.timeout(300) }), /abort/i);
      assert.ok(performance.now() - start >= 280);

      server.setOutage(undefined);
      assert.equal((await api.readNamespacedLease({ name: "f", namespace: "default" })).spec?.holderIdentity, "a");

      server.injectFailure("update", { code: 500 });
      const lease = await api.readNamespacedLease({ name: "f", namespace: "default" });
      assert.equal((await apiError(api.replaceNamespacedLease({ name: "f", namespace: "default", body: lease }))).code, 500);
      await api.replaceNamespacedLease({ name: "f", namespace: "default", body: lease });
    } finally {
      await server.close();
    }
  });
});
