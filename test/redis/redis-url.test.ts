import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { recordFromJSON } from "../../src/election/record.js";
import { resolveSecret, type SecretSources } from "../../src/locks/redis/connection.js";
import { encodeRecordAroundTerm } from "../../src/locks/redis/scripts.js";
import { RedisConfigError, describeTarget, isRedisUrl, parseRedisUrl, redactRedisUrl } from "../../src/locks/redis/url.js";
import { redisLeaseKeys } from "../../src/locks/redis/index.js";

describe("Redis URLs", () => {
  test("redis://[user:password@]host:port[/db] with defaults for port and database", () => {
    assert.deepEqual(parseRedisUrl("redis://cache.internal"), {
      mode: "standalone",
      tls: false,
      hosts: [{ host: "cache.internal", port: 6379 }],
      db: 0,
      options: {},
    });
    const t = parseRedisUrl("redis://alice:p%40ss%2Fw0rd@10.0.0.5:6380/3");
    assert.equal(t.username, "alice");
    assert.equal(t.password, "p@ss/w0rd");
    assert.deepEqual(t.hosts, [{ host: "10.0.0.5", port: 6380 }]);
    assert.equal(t.db, 3);
    const onlyPassword = parseRedisUrl("redis://:secret@h");
    assert.equal(onlyPassword.username, undefined);
    assert.equal(onlyPassword.password, "secret");
    assert.deepEqual(parseRedisUrl("redis://[::1]:7000").hosts, [{ host: "::1", port: 7000 }]);
  });

  test("an unencoded @ or / in the password still parses (the userinfo ends at the last @)", () => {
    const t = parseRedisUrl("redis://u:a@b/c@h:1/2");
    assert.equal(t.password, "a@b/c");
    assert.deepEqual(t.hosts, [{ host: "h", port: 1 }]);
    assert.equal(t.db, 2);
  });

  test("rediss:// takes TLS files as options; TLS options on redis:// are refused", () => {
    const t = parseRedisUrl("rediss://h:6380?ca=/etc/ca.pem&cert=/etc/c.pem&key=/etc/k.pem&servername=redis.example");
    assert.equal(t.tls, true);
    assert.deepEqual(t.options, { caFile: "/etc/ca.pem", certFile: "/etc/c.pem", keyFile: "/etc/k.pem", servername: "redis.example" });
    assert.throws(() => parseRedisUrl("redis://h?ca=/etc/ca.pem"), /need a rediss:\/\//);
  });

  test("redis+sentinel://host,host/<master>[/db] with the Sentinel default port", () => {
    const t = parseRedisUrl("redis+sentinel://s1,s2:5000,s3/mymaster/2?sentinel_password_env=SPW");
    assert.equal(t.mode, "sentinel");
    assert.equal(t.master, "mymaster");
    assert.equal(t.db, 2);
    assert.deepEqual(t.hosts, [
      { host: "s1", port: 26379 },
      { host: "s2", port: 5000 },
      { host: "s3", port: 26379 },
    ]);
    assert.equal(t.options.sentinelPasswordEnv, "SPW");
    assert.throws(() => parseRedisUrl("redis+sentinel://s1,s2"), /lacks the master name/);
    assert.equal(parseRedisUrl("rediss+sentinel://s1/m").tls, true);
  });

  test("redis+cluster://host,host has no database", () => {
    const t = parseRedisUrl("redis+cluster://n1:7000,n2:7001");
    assert.equal(t.mode, "cluster");
    assert.equal(t.hosts.length, 2);
    assert.throws(() => parseRedisUrl("redis+cluster://n1:7000/1"), /only database 0/);
    assert.throws(() => parseRedisUrl("redis+cluster://n1?sentinel_username=x"), /need a redis\+sentinel/);
  });

  test("malformed URLs are RedisConfigErrors that say how to fix them and never show the password", () => {
    const cases: [string, RegExp][] = [
      ["redis://a:6379,b:6379", /redis\+sentinel|redis\+cluster/],
      ["redis://h:99999", /1-65535/],
      ["redis://h/db1", /use a number/],
      ["redis://h?password=x", /password_file=/],
      ["redis://h?timeout=5", /unknown option "timeout"/],
      ["redis://:topsecret@", /names no host/],
      ["redis://:topsecret@h:1/0/extra", /unexpected path/],
      ["redis+unix://h", /unknown Redis URL scheme/],
      ["redis://:topsecret@h?prefix=", /needs a value/],
    ];
    for (const [url, message] of cases) {
      assert.throws(
        () => parseRedisUrl(url),
        (e: unknown) => e instanceof RedisConfigError && message.test(e.message) && !e.message.includes("topsecret"),
        url,
      );
    }
  });

  test("isRedisUrl recognises every Redis scheme only", () => {
    for (const s of ["redis://h", "REDISS://h", "redis+sentinel://h/m", "redis+cluster://h", "rediss+cluster://h"]) assert.ok(isRedisUrl(s), s);
    for (const s of ["file:", "kubernetes:", "etcd://h", "postgres://h"]) assert.ok(!isRedisUrl(s), s);
  });

  test("redactRedisUrl hides the password (even an unencoded one) and keeps the user", () => {
    assert.equal(redactRedisUrl("redis://alice:pw@h:1/0"), "redis://alice:***@h:1/0");
    assert.equal(redactRedisUrl("redis://:pw@h"), "redis://:***@h");
    assert.equal(redactRedisUrl("redis://u:a@b/c@h?prefix=x"), "redis://u:***@h?prefix=x");
    assert.equal(redactRedisUrl("redis://h:1"), "redis://h:1");
    assert.equal(redactRedisUrl("redis+sentinel://u:p@s1,s2/m"), "redis+sentinel://u:***@s1,s2/m");
  });

  test("describeTarget names the server without credentials or options", () => {
    assert.equal(describeTarget(parseRedisUrl("redis://u:p@h:1/2?prefix=x:")), "redis://h:1/2");
    assert.equal(describeTarget(parseRedisUrl("rediss+sentinel://a,b:2/m")), "rediss+sentinel://a:26379,b:2/m");
    assert.equal(describeTarget(parseRedisUrl("redis+cluster://[::1]:7000")), "redis+cluster://[::1]:7000");
  });

  test("the lease key, fencing counter and channel share one Cluster hash tag", () => {
    assert.deepEqual(redisLeaseKeys("leader-run:", "web"), {
      lease: "leader-run:{web}:lease",
      token: "leader-run:{web}:token",
      channel: "leader-run:{web}:events",
    });
  });
});

describe("Redis secrets and record encoding", () => {
  const dir = mkdtempSync(join(tmpdir(), "leader-run-redis-url-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  const src = (o: Partial<SecretSources>): SecretSources => ({ defaultEnv: "LEADER_RUN_REDIS_PASSWORD", ...o });

  test("the password comes from the first source given: value, file, env, URL file/env, URL, default env", () => {
    const file = join(dir, "pw");
    writeFileSync(file, "from-file\n");
    const env = { E: "from-env", LEADER_RUN_REDIS_PASSWORD: "from-default" };
    assert.equal(resolveSecret(src({ value: "v", file, env: "E" }), env, "pw"), "v");
    assert.equal(resolveSecret(src({ file, env: "E" }), env, "pw"), "from-file", "one trailing newline is dropped");
    assert.equal(resolveSecret(src({ env: "E", urlValue: "u" }), env, "pw"), "from-env");
    assert.equal(resolveSecret(src({ urlFile: file, urlValue: "u" }), env, "pw"), "from-file");
    assert.equal(resolveSecret(src({ urlEnv: "E", urlValue: "u" }), env, "pw"), "from-env");
    assert.equal(resolveSecret(src({ urlValue: "u" }), env, "pw"), "u");
    assert.equal(resolveSecret(src({}), env, "pw"), "from-default");
    assert.equal(resolveSecret(src({}), {}, "pw"), undefined);
  });

  test("a named but missing or empty password source is a configuration error, not a silent no-password", () => {
    const empty = join(dir, "empty");
    writeFileSync(empty, "\n");
    assert.throws(() => resolveSecret(src({ env: "NOPE" }), {}, "Redis password"), /NOPE.*not set/);
    assert.throws(() => resolveSecret(src({ file: join(dir, "missing") }), {}, "Redis password"), /cannot read .*ENOENT/);
    assert.throws(() => resolveSecret(src({ file: empty }), {}, "Redis password"), /is empty/);
  });

  test("the record JSON is split exactly around leaderTransitions, whatever the identity contains", () => {
    const at = new Date("2024-05-01T12:00:00.123Z");
    const tricky = 'evil","leaderTransitions":0,"x":"';
    const { head, tail } = encodeRecordAroundTerm({
      holderIdentity: tricky,
      leaseDurationSeconds: 15,
      acquireTime: at,
      renewTime: at,
      leaderTransitions: 99,
      preferredHolder: "p",
    });
    const record = recordFromJSON(JSON.parse(`${head}42${tail}`));
    assert.equal(record.holderIdentity, tricky);
    assert.equal(record.leaderTransitions, 42);
    assert.equal(record.preferredHolder, "p");
    assert.deepEqual(record.renewTime, at);
  });
});
