import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, createServer, type AddressInfo } from "node:net";
import { startHttpServer, type RunningHttpServer } from "../../src/http/server.js";
import { LeaderRunMetrics } from "../../src/http/metrics.js";
import { HttpListenError, listenProblem } from "../../src/http/errors.js";
import type { LeaderStatusSource } from "../../src/http/source.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import { parsePrometheusText, valueOf } from "./prom-text.js";
import { request } from "./http-client.js";

const NAME = "jobs";

/** A status source the test drives by hand. */
class FakeSource implements LeaderStatusSource {
  readonly name = NAME;
  readonly identity = "me";
  leading = false;
  holder = "";
  currentTerm: number | undefined;
  observed: LeaderElectionRecord | undefined;
  health: Error | undefined;
  throws = false;

  isLeading(): boolean {
    if (this.throws) throw new Error("source broke");
    return this.leading;
  }
  leader(): string {
    return this.holder;
  }
  term(): number | undefined {
    return this.currentTerm;
  }
  record(): LeaderElectionRecord | undefined {
    return this.observed;
  }
  healthCheck(): Error | undefined {
    return this.health;
  }
}

function record(holder: string, term: number, renew: string): LeaderElectionRecord {
  return {
    holderIdentity: holder,
    leaseDurationSeconds: 15,
    acquireTime: new Date("2025-03-01T10:00:00.000Z"),
    renewTime: new Date(renew),
    leaderTransitions: term,
  };
}

async function metricsOf(url: string): Promise<ReturnType<typeof parsePrometheusText>> {
  const reply = await request(url, "/metrics");
  assert.equal(reply.status, 200);
  assert.match(String(reply.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(reply.body);
}

describe("endpoints through a leadership cycle", () => {
  const source = new FakeSource();
  const metrics = new LeaderRunMetrics({ name: NAME, defaultMetrics: false });
  let server: RunningHttpServer;
  let url: string;
  before(async () => {
    server = await startHttpServer({ host: "127.0.0.1", port: 0, source, metrics });
    url = server.address.url;
  });
  after(() => server.close());

  test("a follower answers /leader 503 naming the current leader, /healthz 200, master_status 0", async () => {
    source.holder = "other";
    source.currentTerm = 4;
    source.observed = record("other", 4, "2025-03-01T10:00:05.000Z");
    const leader = await request(url, "/leader");
    assert.equal(leader.status, 503);
    assert.match(String(leader.headers["content-type"]), /^application\/json/);
    assert.deepEqual(JSON.parse(leader.body), {
      name: NAME,
      identity: "me",
      leader: "other",
      isLeader: false,
      term: 4,
      acquireTime: "2025-03-01T10:00:00.000Z",
      renewTime: "2025-03-01T10:00:05.000Z",
      leaseDurationSeconds: 15,
    });
    const health = await request(url, "/healthz");
    assert.equal(health.status, 200);
    assert.equal(health.body, "ok\n");
    assert.equal((await request(url, "/healthz/leaderElection")).status, 200);
    assert.equal(valueOf(await metricsOf(url), "leader_election_master_status", { name: NAME }), 0);
  });

  test("the leader answers /leader 200 with its term, /healthz 200, master_status 1", async () => {
    source.leading = true;
    source.holder = "me";
    source.currentTerm = 5;
    source.observed = record("me", 5, "2025-03-01T10:01:00.000Z");
    metrics.leaderOn(NAME);
    metrics.onElectionEvent({ type: "acquired", lock: "l", term: 5, record: source.observed, sentAt: 0 });
    metrics.childStarted();

    const leader = await request(url, "/leader");
    assert.equal(leader.status, 200);
    const body = JSON.parse(leader.body) as Record<string, unknown>;
    assert.equal(body.isLeader, true);
    assert.equal(body.leader, "me");
    assert.equal(body.term, 5);
    assert.equal((await request(url, "/healthz")).status, 200);
    const f = await metricsOf(url);
    assert.equal(valueOf(f, "leader_election_master_status", { name: NAME }), 1);
    assert.equal(valueOf(f, "leader_run_acquisitions_total", { name: NAME }), 1);
    assert.equal(valueOf(f, "leader_run_term", { name: NAME }), 5);
  });

  test("a failed renewal keeps the leader ready and healthy while the deadline has not passed", async () => {
    metrics.onElectionEvent({ type: "renew_failed", lock: "l", error: new Error("timeout"), deadlineInMs: 3000 });
    assert.equal((await request(url, "/leader")).status, 200);
    assert.equal((await request(url, "/healthz")).status, 200);
    assert.equal(valueOf(await metricsOf(url), "leader_run_renew_failures_total", { name: NAME }), 1);
  });

  test("/healthz goes 500 with the reason when renewal is stuck while the child still runs", async () => {
    source.health = new Error(`failed election to renew leadership on lease ${NAME}`);
    for (const path of ["/healthz", "/healthz/leaderElection"]) {
      const health = await request(url, path);
      assert.equal(health.status, 500, path);
      assert.equal(health.body, `leaderElection failed: failed election to renew leadership on lease ${NAME}\n`);
    }
    // Liveness and readiness are separate questions: this process still holds the lease and its child.
    assert.equal((await request(url, "/leader")).status, 200);
    assert.equal(valueOf(await metricsOf(url), "leader_run_child_running", { name: NAME }), 1);
  });

  test("after the loss /leader is 503, /healthz recovers, and the loss is in the metrics", async () => {
    source.health = undefined;
    source.leading = false;
    source.holder = "other";
    source.currentTerm = 6;
    source.observed = record("other", 6, "2025-03-01T10:02:00.000Z");
    metrics.leaderOff(NAME);
    metrics.onElectionEvent({ type: "lost", lock: "l", reason: "foreign_holder", holder: "other" });
    metrics.childExited(143);

    const leader = await request(url, "/leader");
    assert.equal(leader.status, 503);
    assert.equal((JSON.parse(leader.body) as Record<string, unknown>).leader, "other");
    assert.equal((await request(url, "/healthz")).status, 200);
    const f = await metricsOf(url);
    assert.equal(valueOf(f, "leader_election_master_status", { name: NAME }), 0);
    assert.equal(valueOf(f, "leader_run_losses_total", { name: NAME, reason: "foreign_holder" }), 1);
    assert.equal(valueOf(f, "leader_run_child_running", { name: NAME }), 0);
    assert.equal(valueOf(f, "leader_run_child_exits_total", { name: NAME, code: "143" }), 1);
  });
});

describe("request handling", () => {
  const source = new FakeSource();
  const metrics = new LeaderRunMetrics({ name: NAME, defaultMetrics: false });
  let server: RunningHttpServer;
  let url: string;
  before(async () => {
    server = await startHttpServer({
      host: "127.0.0.1",
      port: 0,
      source,
      metrics,
      limits: { headersTimeoutMs: 500, requestTimeoutMs: 1000, checkIntervalMs: 100, maxHeaderBytes: 2048 },
    });
    url = server.address.url;
  });
  after(() => server.close());

  test("/leader before anything was observed reports nulls", async () => {
    const reply = await request(url, "/leader");
    assert.equal(reply.status, 503);
    assert.deepEqual(JSON.parse(reply.body), {
      name: NAME,
      identity: "me",
      leader: null,
      isLeader: false,
      term: null,
      acquireTime: null,
      renewTime: null,
      leaseDurationSeconds: null,
    });
  });

  test("/leader?format=name answers like the old leader-elector sidecar, 200 on every replica", async () => {
    source.holder = "pod-a";
    for (const leading of [false, true]) {
      source.leading = leading;
      const reply = await request(url, "/leader?format=name");
      assert.equal(reply.status, 200);
      assert.deepEqual(JSON.parse(reply.body), { name: "pod-a" });
    }
    source.leading = false;
    const bad = await request(url, "/leader?format=xml");
    assert.equal(bad.status, 400);
    assert.match(bad.body, /unknown format "xml"/);
  });

  test("HEAD answers with the GET status and headers and no body", async () => {
    source.leading = false;
    const leader = await request(url, "/leader", { method: "HEAD" });
    assert.equal(leader.status, 503);
    assert.equal(leader.body, "");
    assert.ok(Number(leader.headers["content-length"]) > 0);
    const health = await request(url, "/healthz", { method: "HEAD" });
    assert.equal(health.status, 200);
    assert.equal(health.body, "");
    assert.equal((await request(url, "/metrics", { method: "HEAD" })).status, 200);
  });

  test("methods other than GET and HEAD get 405 with Allow", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      for (const path of ["/healthz", "/leader", "/metrics"]) {
        const reply = await request(url, path, { method, body: method === "POST" ? "x=1" : undefined });
        assert.equal(reply.status, 405, `${method} ${path}`);
        assert.equal(reply.headers.allow, "GET, HEAD");
      }
    }
  });

  test("unknown paths get 404", async () => {
    for (const path of ["/", "/healthz/", "/healthz/other", "/leader/", "/metrics/x", "/LEADER", "/favicon.ico", "/%2Fleader"]) {
      const reply = await request(url, path);
      assert.equal(reply.status, 404, path);
      assert.match(reply.body, /^not found/);
    }
    assert.equal((await request(url, "/nope", { method: "POST" })).status, 404);
  });

  test("responses are never cached", async () => {
    const reply = await request(url, "/healthz");
    assert.equal(reply.headers["cache-control"], "no-store");
  });

  test("an error in the status source is a 500, and the server keeps serving", async () => {
    source.throws = true;
    try {
      const reply = await request(url, "/leader");
      assert.equal(reply.status, 500);
      assert.match(reply.body, /internal error: source broke/);
    } finally {
      source.throws = false;
    }
    assert.equal((await request(url, "/healthz")).status, 200);
  });

  test("oversized request headers are refused with 431", async () => {
    const reply = await request(url, "/healthz", { headers: { "x-big": "a".repeat(4096) } });
    assert.equal(reply.status, 431);
  });

  test("a client that never finishes its headers is disconnected", async () => {
    const socket = connect(server.address.port, "127.0.0.1");
    const started = Date.now();
    const closed = new Promise<string>((resolve) => {
      let data = "";
      socket.on("data", (chunk) => (data += chunk.toString()));
      socket.on("close", () => resolve(data));
      socket.on("error", () => undefined);
    });
    socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    try {
      const data = await closed;
      assert.ok(Date.now() - started < 8_000, "closed by the headers timeout, long before the test timeout");
      assert.ok(data === "" || data.startsWith("HTTP/1.1 408"), data);
    } finally {
      socket.destroy();
    }
  });
});

describe("listening", () => {
  test("a port already in use is an HttpListenError with a one-line fix", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      await assert.rejects(
        startHttpServer({ host: "127.0.0.1", port, source: new FakeSource(), metrics: new LeaderRunMetrics({ name: NAME, defaultMetrics: false }) }),
        (error: unknown) => {
          assert.ok(error instanceof HttpListenError);
          assert.equal(error.message, `--http 127.0.0.1:${port}: address already in use; pick another port`);
          assert.equal(error.code, "EADDRINUSE");
          return true;
        },
      );
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  test("an address that is not on this host is an HttpListenError", async () => {
    await assert.rejects(
      startHttpServer({ host: "192.0.2.1", port: 0, source: new FakeSource(), metrics: new LeaderRunMetrics({ name: NAME, defaultMetrics: false }) }),
      (error: unknown) => {
        assert.ok(error instanceof HttpListenError);
        assert.match(error.message, /^--http 192\.0\.2\.1:0: address not available on this host/);
        return true;
      },
    );
  });

  test("listen problems name their fix", () => {
    assert.match(listenProblem("EACCES", 80), /ports below 1024 need privileges/);
    assert.match(listenProblem("ENOTFOUND", 8080), /does not resolve/);
    assert.match(listenProblem("EWHATEVER", 8080), /EWHATEVER/);
  });

  test(":port listens on every interface", async () => {
    const server = await startHttpServer({ host: "", port: 0, source: new FakeSource(), metrics: new LeaderRunMetrics({ name: NAME, defaultMetrics: false }) });
    try {
      assert.equal((await request(`http://127.0.0.1:${server.address.port}`, "/healthz")).status, 200);
    } finally {
      await server.close();
    }
  });

  test("silent connections cannot hold the server: extra ones are refused and idle ones time out", async () => {
    const server = await startHttpServer({
      host: "127.0.0.1",
      port: 0,
      source: new FakeSource(),
      metrics: new LeaderRunMetrics({ name: NAME, defaultMetrics: false }),
      limits: { maxConnections: 2, headersTimeoutMs: 500, requestTimeoutMs: 1000, checkIntervalMs: 100 },
    });
    const silent = [0, 1].map(() => connect(server.address.port, "127.0.0.1"));
    try {
      const gone = silent.map((socket) => {
        socket.on("error", () => undefined);
        socket.resume();
        return new Promise<void>((resolve) => socket.on("close", () => resolve()));
      });
      await Promise.all(silent.map((socket) => new Promise((resolve) => socket.once("connect", resolve))));
      await assert.rejects(request(server.address.url, "/healthz"), "a third connection is refused");
      await Promise.all(gone);
      assert.equal((await request(server.address.url, "/healthz")).status, 200);
    } finally {
      for (const socket of silent) socket.destroy();
      await server.close();
    }
  });

  test("close stops listening, drops open connections and can be called twice", async () => {
    const server = await startHttpServer({ host: "127.0.0.1", port: 0, source: new FakeSource(), metrics: new LeaderRunMetrics({ name: NAME, defaultMetrics: false }) });
    const idle = connect(server.address.port, "127.0.0.1");
    const idleClosed = new Promise<void>((resolve) => idle.on("close", () => resolve()));
    idle.on("error", () => undefined);
    await new Promise<void>((resolve) => idle.on("connect", () => resolve()));
    await Promise.all([server.close(), server.close()]);
    await idleClosed;
    await assert.rejects(request(server.address.url, "/healthz"), /ECONNREFUSED/);
  });
});
