/**
 * The real `leader-run` command on the etcd lock: hand-over between two processes, status/release,
 * a frozen etcd (SIGSTOP) longer than the renew deadline, TLS and authentication.
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { isRunning } from "../child/fixtures/util.js";
import { freePort, makeTempDir } from "../support/redis-server.js";
import { requireEtcd, startEtcd } from "../support/etcd-server.js";
import { Cli, runCli, stopAllClis } from "../support/cli-process.js";

after(() => stopAllClis());

let leases = 0;
const leaseName = (): string => `cli-${process.pid}-${++leases}`;

// Sequential: real processes with second-scale leases need the CPU this shared machine has left.
describe("leader-run --lock etcd:// (real processes)", () => {
  test("SIGTERM on the leader hands over: the standby's command starts within a second; status, etcdctl and release agree", async (t) => {
    if (!requireEtcd(t)) return;
    const etcd = await startEtcd();
    t.after(() => etcd.stop());
    const name = leaseName();
    // Default timings (retry period 2s): the hand-over within a second is the watch's doing.
    const a = new Cli(["--lock", etcd.url, "--name", name, "--identity", "alpha", "--", "sleep", "1000"]);
    assert.ok(await a.waitFor("child_started", 20_000), a.stderr.join("\n"));
    const b = new Cli(["--lock", etcd.url, "--name", name, "--identity", "beta", "--", "sleep", "1000"]);
    assert.ok(await b.waitFor("waiting", 20_000), b.stderr.join("\n"));
    assert.equal(b.events("child_started").length, 0);

    const status1 = await runCli(["status", "--lock", etcd.url, "--name", name, "--output", "json"]);
    assert.equal(status1.code, 0, status1.stderr);
    const s1 = JSON.parse(status1.stdout) as { holder: string; term: number; state: string };
    assert.equal(s1.holder, "alpha");

    const aChild = a.childPids()[0] ?? -1;
    a.signal("SIGTERM");
    const aExit = await a.exited;
    assert.equal(aExit.code, 143, a.stderr.slice(-5).join("\n"));
    assert.equal(isRunning(aChild), false);
    const started = await b.waitFor("child_started", 10_000);
    assert.ok(started, b.stderr.join("\n"));
    const handOverMs = started.at - aExit.at;
    assert.ok(handOverMs < 1000, `the standby's child started ${handOverMs.toFixed(0)}ms after the leader exited`);

    const status2 = await runCli(["status", "--lock", etcd.url, "--name", name, "--output", "json"]);
    assert.equal(status2.code, 0, status2.stderr);
    const s2 = JSON.parse(status2.stdout) as { holder: string; term: number };
    assert.equal(s2.holder, "beta");
    assert.ok(s2.term > s1.term, `term ${s1.term} → ${s2.term}`);
    const text = await runCli(["status", "--lock", etcd.url, "--name", name]);
    assert.match(text.stdout, /beta/);

    const listed = await etcd.etcdctl(["get", "--prefix", "leader-run/"]);
    assert.match(listed, new RegExp(`leader-run/${name}/lease\\n\\{"holderIdentity":"beta"`));

    const released = await runCli(["release", "--lock", etcd.url, "--name", name, "--force"]);
    assert.equal(released.code, 0, released.stderr);
    // A forced release makes the live holder stop its command (a foreign record on its next renewal).
    const bExit = await b.exited;
    assert.notEqual(bExit.code, 0);
    const status3 = await runCli(["status", "--lock", etcd.url, "--name", name, "--output", "json"]);
    assert.equal(status3.code, 3, status3.stderr);
  });

  test("etcd frozen (SIGSTOP) longer than the renew deadline: the command stops by its deadline, exit 76, no crash", async (t) => {
    if (!requireEtcd(t)) return;
    const etcd = await startEtcd();
    t.after(() => etcd.stop());
    const name = leaseName();
    const cli = new Cli(["--lock", etcd.url, "--name", name, "--lease-duration", "4s", "--renew-deadline", "2s", "--retry-period", "500ms", "--kill-grace", "500ms", "--", "sleep", "1000"]);
    assert.ok(await cli.waitFor("child_started", 20_000), cli.stderr.join("\n"));
    const child = cli.childPids()[0] ?? -1;
    const member = etcd.members[0];
    assert.ok(member);
    const frozenAt = performance.now();
    await member.pause();
    try {
      const exit = await cli.exited;
      assert.equal(exit.code, 76, cli.stderr.slice(-8).join("\n"));
      // The command is gone by RD + kill grace after the last renewal, which was before the freeze
      // (a margin for a loaded machine; the lease duration is 4s); leader-run exits right after.
      const childExited = cli.events("child_exited")[0];
      assert.ok(childExited, cli.stderr.slice(-8).join("\n"));
      assert.ok(childExited.at - frozenAt < 2000 + 500 + 1500, `the command exited ${(childExited.at - frozenAt).toFixed(0)}ms after the freeze`);
      assert.ok(exit.at - frozenAt < 8000, `leader-run exited ${(exit.at - frozenAt).toFixed(0)}ms after the freeze`);
      assert.equal(isRunning(child), false);
      assert.ok(cli.events("lost").length > 0);
      assert.equal(cli.events("internal_error").length, 0);
      assert.ok(!cli.stderr.some((l) => /at .*\.js:\d+/.test(l)), "no stack trace");
    } finally {
      member.resume();
    }
  });

  test("unreachable etcd: campaigning goes on, SIGTERM ends it promptly (nothing keeps the process alive); --no-wait exits 69", async (t) => {
    if (!requireEtcd(t)) return;
    const url = `etcd://127.0.0.1:${await freePort()}`;
    const name = leaseName();
    const cli = new Cli(["--lock", url, "--name", name, "--", "sleep", "1000"]);
    assert.ok(await cli.waitFor("acquire_failed", 20_000), cli.stderr.join("\n"));
    const signalled = performance.now();
    cli.signal("SIGTERM");
    const exit = await cli.exited;
    assert.equal(exit.code, 143, cli.stderr.slice(-3).join("\n"));
    assert.ok(exit.at - signalled < 3000, `exited ${(exit.at - signalled).toFixed(0)}ms after SIGTERM`);
    const once = await runCli(["--lock", url, "--name", name, "--no-wait", "--", "true"]);
    assert.equal(once.code, 69, once.stderr);
    assert.match(once.stderr, /cannot reach the lock/);
  });

  test("etcds:// with a CA and a client certificate (--tls-ca, --tls-cert, --tls-key and their env twins)", async (t) => {
    if (!requireEtcd(t, { tls: true })) return;
    const etcd = await startEtcd({ tls: true });
    t.after(() => etcd.stop());
    const tls = etcd.tls;
    assert.ok(tls);
    const name = leaseName();
    const ran = await runCli(["--lock", etcd.url, "--name", name, "--tls-ca", tls.ca, "--tls-cert", tls.clientCert, "--tls-key", tls.clientKey, "--no-wait", "--", "true"]);
    assert.equal(ran.code, 0, ran.stderr);
    const status = await runCli(["status", "--lock", etcd.url, "--name", name, "--output", "json"], {
      LEADER_RUN_TLS_CA: tls.ca,
      LEADER_RUN_TLS_CERT: tls.clientCert,
      LEADER_RUN_TLS_KEY: tls.clientKey,
    });
    assert.equal(status.code, 3, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { term: number }).term, 0);
    const usage = await runCli(["status", "--lock", etcd.url.replace("etcds:", "etcd:"), "--name", name, "--tls-ca", tls.ca]);
    assert.equal(usage.code, 64);
    assert.match(usage.stderr, /--tls-ca is only for --lock etcds:\/\//);
  });

  test("user and password: from LEADER_RUN_ETCD_PASSWORD or a file; wrong password or missing permission exits 69 naming key and verb", async (t) => {
    if (!requireEtcd(t)) return;
    const etcd = await startEtcd({
      auth: {
        users: {
          alice: { password: "alice-secret", readwritePrefix: "leader-run/" },
          bob: { password: "bob-secret", readPrefix: "elsewhere/" },
        },
      },
    });
    t.after(() => etcd.stop());
    const name = leaseName();
    const host = etcd.endpoints[0] ?? "";
    const ok = await runCli(["--lock", `etcd://alice@${host}`, "--name", name, "--no-wait", "--", "true"], { LEADER_RUN_ETCD_PASSWORD: "alice-secret" });
    assert.equal(ok.code, 0, ok.stderr);
    const file = join(makeTempDir("leader-run-etcd-pw-"), "pw");
    writeFileSync(file, "alice-secret\n");
    const viaFile = await runCli(["status", "--lock", `etcd://alice@${host}`, "--name", name, "--etcd-password-file", file]);
    assert.equal(viaFile.code, 3, viaFile.stderr);

    const wrong = await runCli(["--lock", `etcd://alice@${host}`, "--name", name, "--", "true"], { LEADER_RUN_ETCD_PASSWORD: "nope" });
    assert.equal(wrong.code, 69, wrong.stderr);
    assert.match(wrong.stderr, /rejected user \\?"alice\\?".*key leader-run\//);

    const denied = await runCli(["--lock", `etcd://bob@${host}`, "--name", name, "--", "true"], { LEADER_RUN_ETCD_PASSWORD: "bob-secret" });
    assert.equal(denied.code, 69, denied.stderr);
    assert.match(denied.stderr, new RegExp(`denied read on key leader-run/${name}/lease to user \\\\?"bob\\\\?"`));
    assert.ok(!denied.stderr.includes("bob-secret") && !wrong.stderr.includes("nope"), "no password in the output");

    const anonymous = await runCli(["--lock", `etcd://${host}`, "--name", name, "--", "true"]);
    assert.equal(anonymous.code, 69, anonymous.stderr);
    assert.match(anonymous.stderr, /requires authentication/);
  });
});
