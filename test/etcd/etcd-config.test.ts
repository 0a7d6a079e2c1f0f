/** etcd URL forms and settings, resolved before anything connects (no etcd needed). */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseLockUrl, type EtcdLockSpec } from "../../src/locks/url.js";
import { EtcdConfigError, resolveConnection, resolvePrefix } from "../../src/locks/etcd/config.js";
import { makeTempDir } from "../support/redis-server.js";

function etcd(url: string): EtcdLockSpec {
  const spec = parseLockUrl(url);
  assert.equal(spec.kind, "etcd");
  return spec as EtcdLockSpec;
}

describe("etcd settings", () => {
  test("etcd:// and etcds:// with several endpoints; the password is redacted", () => {
    const plain = etcd("etcd://a:2379,b");
    assert.equal(plain.tls, false);
    assert.deepEqual(plain.endpoints, [{ host: "a", port: 2379 }, { host: "b", port: 2379 }]);
    const secure = etcd("etcds://app:pw@a:2379/jobs");
    assert.equal(secure.tls, true);
    assert.equal(secure.redacted, "etcds://app@a:2379/jobs");
    assert.throws(() => parseLockUrl("etcds://"), /etcds:\/\//);
  });

  test("key prefix: option, else the URL path, else leader-run/; a trailing / is added", () => {
    assert.equal(resolvePrefix(etcd("etcd://h"), undefined), "leader-run/");
    assert.equal(resolvePrefix(etcd("etcd://h/jobs"), undefined), "jobs/");
    assert.equal(resolvePrefix(etcd("etcd://h/jobs/leases/"), undefined), "jobs/leases/");
    assert.equal(resolvePrefix(etcd("etcd://h/jobs"), "other"), "other/");
  });

  test("password: explicit, file, named variable, URL, LEADER_RUN_ETCD_PASSWORD; a named source that is missing is an error", () => {
    const dir = makeTempDir("leader-run-etcd-cfg-");
    const file = join(dir, "pw");
    writeFileSync(file, "from-file\n");
    const spec = etcd("etcd://app@h");
    assert.deepEqual(resolveConnection(spec, { env: { LEADER_RUN_ETCD_PASSWORD: "from-env" } }).auth, { username: "app", password: "from-env" });
    assert.equal(resolveConnection(spec, { passwordFile: file, env: { LEADER_RUN_ETCD_PASSWORD: "x" } }).auth?.password, "from-file");
    assert.equal(resolveConnection(etcd(`etcd://app@h?password_file=${file}`), { env: {} }).auth?.password, "from-file");
    assert.equal(resolveConnection(etcd("etcd://app@h?password_env=MINE"), { env: { MINE: "mine" } }).auth?.password, "mine");
    assert.equal(resolveConnection(etcd("etcd://app:inline@h"), { env: {} }).auth?.password, "inline");
    assert.throws(() => resolveConnection(etcd("etcd://app@h?password_env=MISSING"), { env: {} }), /MISSING, named as the etcd password source, is not set/);
    assert.throws(() => resolveConnection(spec, { passwordFile: join(dir, "nope"), env: {} }), /cannot read the etcd password file/);
    assert.throws(() => resolveConnection(etcd("etcd://h"), { env: { LEADER_RUN_ETCD_PASSWORD: "x" } }), /needs a user name/);
    assert.equal(resolveConnection(etcd("etcd://h"), { env: {} }).auth, undefined);
  });

  test("TLS files only with etcds://, cert and key together, unreadable files named", () => {
    const dir = makeTempDir("leader-run-etcd-cfg-");
    const pem = join(dir, "x.pem");
    writeFileSync(pem, "-----BEGIN CERTIFICATE-----\n");
    assert.throws(() => resolveConnection(etcd("etcd://h"), { tls: { caFile: pem } }), /need an etcds:\/\/ URL/);
    assert.throws(() => resolveConnection(etcd("etcds://h"), { tls: { certFile: pem } }), /both --tls-cert and --tls-key/);
    assert.throws(() => resolveConnection(etcd("etcds://h"), { tls: { caFile: join(dir, "none") } }), (e: unknown) => e instanceof EtcdConfigError && /TLS CA file .*none: ENOENT/.test(e.message));
    const ok = resolveConnection(etcd(`etcds://h?ca=${pem}`), {});
    assert.ok(ok.tls?.ca.toString().startsWith("-----BEGIN"));
    assert.ok((resolveConnection(etcd("etcds://h"), {}).tls?.ca.length ?? 0) > 0, "system roots without --tls-ca");
    assert.throws(() => resolveConnection(etcd("etcd://h?password=x"), {}), /password_file=, password_env=/);
  });
});
