import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LockConfigError } from "../../src/locks/errors.js";
import { exitCodeFor } from "../../src/cli/main.js";
import { LOCK_SCHEMES, parseLockUrl, redactLockUrl, redactSecrets } from "../../src/locks/url.js";

const cwd = "/srv/app";

describe("parseLockUrl", () => {
  it("file: forms resolve to an absolute directory (or the backend default)", () => {
    assert.deepEqual(parseLockUrl("file:", { cwd }), { kind: "file", url: "file:", redacted: "file:" });
    assert.equal(parseLockUrl("file:/var/lock/jobs", { cwd }).kind, "file");
    assert.equal((parseLockUrl("file:/var/lock/jobs", { cwd }) as { dir?: string }).dir, "/var/lock/jobs");
    assert.equal((parseLockUrl("file:locks", { cwd }) as { dir?: string }).dir, "/srv/app/locks");
    assert.equal((parseLockUrl("file:./a/../b", { cwd }) as { dir?: string }).dir, "/srv/app/b");
    assert.equal((parseLockUrl("file:///tmp/a%20b", { cwd }) as { dir?: string }).dir, "/tmp/a b");
    assert.equal((parseLockUrl("FILE:/x", { cwd }) as { dir?: string }).dir, "/x");
  });

  it("refuses remote file URLs", () => {
    assert.throws(() => parseLockUrl("file://otherhost/x", { cwd }), LockConfigError);
  });

  it("kubernetes: and k8s: take no address", () => {
    assert.equal(parseLockUrl("kubernetes:").kind, "kubernetes");
    assert.equal(parseLockUrl("k8s:").kind, "kubernetes");
    assert.throws(() => parseLockUrl("k8s:default"), /takes no address; choose the namespace with --namespace/);
  });

  it("redis URLs are parsed by the Redis backend's parser, with every mode", () => {
    const plain = parseLockUrl("redis://user:pw@cache:6380/2");
    assert.equal(plain.kind, "redis");
    if (plain.kind !== "redis") return;
    assert.deepEqual(plain.target.hosts, [{ host: "cache", port: 6380 }]);
    assert.equal(plain.target.db, 2);
    assert.equal(plain.target.password, "pw");
    assert.equal(plain.redacted, "redis://user@cache:6380/2");
    const tls = parseLockUrl("rediss://cache");
    assert.ok(tls.kind === "redis" && tls.target.tls);
    const sentinel = parseLockUrl("redis+sentinel://s1:26379,s2/mymaster");
    assert.ok(sentinel.kind === "redis" && sentinel.target.mode === "sentinel" && sentinel.target.master === "mymaster");
    const cluster = parseLockUrl("redis+cluster://n1:7000,n2:7001");
    assert.ok(cluster.kind === "redis" && cluster.target.mode === "cluster" && cluster.target.hosts.length === 2);
  });

  it("etcd URLs carry several endpoints and an optional key prefix", () => {
    const spec = parseLockUrl("etcd://root:secret@e1:2379,e2,[::1]:2380/jobs/leases");
    assert.equal(spec.kind, "etcd");
    if (spec.kind !== "etcd") return;
    assert.deepEqual(spec.endpoints, [
      { host: "e1", port: 2379 },
      { host: "e2", port: 2379 },
      { host: "::1", port: 2380 },
    ]);
    assert.equal(spec.username, "root");
    assert.equal(spec.password, "secret");
    assert.equal(spec.prefix, "jobs/leases");
    assert.equal(spec.redacted, "etcd://root@e1:2379,e2,[::1]:2380/jobs/leases");
    assert.throws(() => parseLockUrl("etcd://"), /etcd:\/\/\[user:password@\]host:2379/);
    assert.throws(() => parseLockUrl("etcd://h:0"), /bad port "0"/);
  });

  it("postgres:// and postgresql:// keep the connection string for the driver", () => {
    const spec = parseLockUrl("postgresql://app:pw@db/locks?sslmode=require");
    assert.equal(spec.kind, "postgres");
    assert.equal(spec.url, "postgresql://app:pw@db/locks?sslmode=require");
    assert.equal(spec.redacted, "postgresql://app@db/locks?sslmode=require");
    assert.equal(parseLockUrl("postgres://db/x").kind, "postgres");
    assert.throws(() => parseLockUrl("postgres:db"), LockConfigError);
  });

  it("an unknown scheme is a usage error listing every known scheme, without the password", () => {
    assert.throws(
      () => parseLockUrl("mysql://u:hunter2@h/x"),
      (e: unknown) => {
        assert.ok(e instanceof LockConfigError);
        assert.equal(exitCodeFor(e).code, 64);
        assert.ok(!e.message.includes("hunter2"), e.message);
        assert.match(e.message, /unknown lock scheme "mysql:"/);
        for (const s of LOCK_SCHEMES) assert.ok(e.message.includes(s), s);
        return true;
      },
    );
  });

  it("a bare path or an empty value explains what to write", () => {
    assert.throws(() => parseLockUrl("/var/lock"), /for a lock directory write file:\/var\/lock/);
    assert.throws(() => parseLockUrl(""), /is empty/);
    assert.throws(() => parseLockUrl("localhost:6379"), /unknown lock scheme "localhost:"/);
  });

  it("Redis errors keep the password out of the message", () => {
    assert.throws(
      () => parseLockUrl("redis://:hunter2@h:99999"),
      (e: unknown) => e instanceof LockConfigError && !e.message.includes("hunter2") && /port/.test(e.message),
    );
  });

  it("names the source of the value in errors", () => {
    assert.throws(() => parseLockUrl("nope://x", { flag: "LEADER_RUN_LOCK" }), { message: /^LEADER_RUN_LOCK "nope:\/\/x": unknown lock scheme/ });
  });
});

describe("redactLockUrl / redactSecrets", () => {
  const cases: [string, string][] = [
    ["redis://user:pw@h:6379/0", "redis://user@h:6379/0"],
    ["redis://:pw@h", "redis://h"],
    ["redis://:p@ss@h/1", "redis://h/1"],
    ["rediss://user@h", "rediss://user@h"],
    ["redis+sentinel://:pw@s1,s2/master", "redis+sentinel://s1,s2/master"],
    ["postgres://app:pw@db/x?sslmode=require&password=zz", "postgres://app@db/x?sslmode=require"],
    ["postgres://db/x?password=zz", "postgres://db/x"],
    ["etcd://h?token=abc&x=1", "etcd://h?x=1"],
    ["file:/var/lock", "file:/var/lock"],
    ["k8s:", "k8s:"],
  ];
  for (const [input, want] of cases) {
    it(`redacts ${input}`, () => assert.equal(redactLockUrl(input), want));
  }

  it("removes passwords from URLs inside free text", () => {
    assert.equal(
      redactSecrets("connect redis://u:pw@h:6379 failed; retry postgres://:x@db?password=y"),
      "connect redis://u@h:6379 failed; retry postgres://db?***",
    );
    assert.equal(redactSecrets("plain text, nothing secret"), "plain text, nothing secret");
  });
});
