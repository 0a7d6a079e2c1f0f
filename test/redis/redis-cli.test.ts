/**
 * The real `leader-run` command on the Redis lock: separate processes, real signals, real redis-server.
 * Runs bin/leader-run.js when dist/ is newer than every source file (after `npm run build`: faster to
 * start), otherwise the CLI from source through tsx (test/cli/fixtures/cli.ts).
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { isRunning } from "../child/fixtures/util.js";
import { Cli, stopAllClis } from "../support/cli-process.js";
import { RedisServer, freePort, makeTempDir, requireRedis } from "../support/redis-server.js";
import { delay, until } from "./harness.js";

after(stopAllClis);

// LD 3s, RD 2s, RP 0.5s, kill grace 0.5s: RD + grace < LD as the CLI demands.
const TIMING = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms", "--kill-grace", "500ms"];
const LD = 3000;
const RP = 500;
let leases = 0;
const leaseName = (): string => `cli-${process.pid}-${++leases}`;
const leaseKey = (name: string): string => `leader-run:{${name}}:lease`;

/** Arrival time of the last attempt the follower logged as failed (`waiting` once, or `acquire_failed`). */
function lastLoggedFailure(cli: Cli): number | undefined {
  return [...cli.events("waiting"), ...cli.events("acquire_failed")].map((e) => e.at).sort((x, y) => x - y).at(-1);
}

async function leaderAndFollower(a: Cli, b: Cli): Promise<[Cli, Cli]> {
  const first = await Promise.race([a.waitFor("acquired", 20_000).then(() => a), b.waitFor("acquired", 20_000).then(() => b)]);
  return first === a ? [a, b] : [b, a];
}

// Sequential: real processes with second-scale leases need the CPU this shared machine has left.
describe("leader-run --lock redis:// (real processes)", () => {
  test("three processes on one lease run their commands one at a time, with strictly increasing fencing tokens", async (t) => {
    if (!requireRedis(t)) return;
    const server = await RedisServer.start();
    t.after(() => server.kill());
    const dir = makeTempDir();
    const logFile = join(dir, "log");
    const marker = join(dir, "running");
    const script = 'if [ -e "$M" ]; then echo OVERLAP >> "$LOG"; fi; touch "$M"; echo "start $LEADER_RUN_FENCING_TOKEN" >> "$LOG"; sleep 0.6; echo end >> "$LOG"; rm -f "$M"';
    const name = leaseName();
    const clis = [1, 2, 3].map(() => new Cli(["--lock", server.url, "--name", name, ...TIMING, "--", "sh", "-c", script], { M: marker, LOG: logFile }));
    const exits = await Promise.all(clis.map((c) => c.exited));
    assert.deepEqual(exits.map((e) => e.code), [0, 0, 0], clis.map((c) => c.stderr.slice(-3).join("\n")).join("\n"));
    const lines = readFileSync(logFile, "utf8").trim().split("\n");
    assert.ok(!lines.includes("OVERLAP"), lines.join(","));
    assert.deepEqual(lines.filter((l) => l === "end").length, 3);
    const tokens = lines.filter((l) => l.startsWith("start ")).map((l) => Number(l.slice(6)));
    assert.equal(tokens.length, 3);
    for (let i = 1; i < tokens.length; i++) assert.ok((tokens[i] ?? -1) > (tokens[i - 1] ?? -1), `tokens ${tokens.join(",")}`);
  });

  test("a leader killed with SIGKILL is replaced within lease duration + one retry period, its child already gone", async (t) => {
    if (!requireRedis(t)) return;
    const server = await RedisServer.start();
    t.after(() => server.kill());
    const name = leaseName();
    const a = new Cli(["--lock", server.url, "--name", name, ...TIMING, "--", "sleep", "30"]);
    const b = new Cli(["--lock", server.url, "--name", name, ...TIMING, "--", "sleep", "30"]);
    t.after(() => Promise.all([a, b].map((c) => c.stop())));
    const [leader, follower] = await leaderAndFollower(a, b);
    assert.ok(await leader.waitFor("child_started", 10_000));
    await follower.waitFor("waiting", 10_000);
    await delay(700);
    const leaderChild = leader.childPids()[0] ?? -1;
    assert.ok(leaderChild > 0, "the leader's child pid is known");
    // The lease passes LD after Redis applied the leader's last renewal, which can be up to a retry
    // period (more on a loaded machine) before the kill. Read where that is instead of assuming it: a
    // renewal in flight at the kill only moves it later. The follower takes over once the key is
    // gone; by client-go's rule (now > observedTime + LD) it could not do so earlier either.
    const expiresAt = await server.expiryOf(leaseKey(name));
    const killedAt = performance.now();
    leader.signal("SIGKILL");
    const acquired = await follower.waitFor("acquired", LD + 5000);
    assert.ok(acquired, "the follower took over");
    const took = acquired.at - killedAt;
    assert.ok(acquired.at >= expiresAt - 5, `not before the lease could pass (${(acquired.at - expiresAt).toFixed(0)}ms after its expiry, ${took.toFixed(0)}ms after the kill)`);
    assert.ok(took <= LD + RP + 700, `within LD + RP (+ slack for this shared machine): ${took.toFixed(0)}ms`);
    assert.ok(!isRunning(leaderChild), "the killed leader's child was gone before the take-over");
    assert.equal(acquired.term, 1);
  });

  test("Redis frozen (SIGSTOP): briefly, the children keep running; beyond the renew deadline, they stop before the lease could pass", async (t) => {
    if (!requireRedis(t)) return;
    const server = await RedisServer.start();
    t.after(() => server.kill());
    // A renew deadline with room for a brief freeze plus the retry after it on a loaded machine; LD
    // keeps the usual margin over RD + kill grace. Debug logs show the renewals.
    const FREEZE_RD = 3000;
    const timing = ["--lease-duration", "5s", "--renew-deadline", "3s", "--retry-period", "500ms", "--kill-grace", "500ms", "--log-level", "debug"];
    // One leader per --on-lost policy, on two leases of the same server.
    const names = [leaseName(), leaseName()] as const;
    const exiting = new Cli(["--lock", server.url, "--name", names[0], ...timing, "--on-lost", "exit", "--", "sleep", "30"]);
    const campaigning = new Cli(["--lock", server.url, "--name", names[1], ...timing, "--on-lost", "campaign", "--", "sleep", "30"]);
    const both = [exiting, campaigning];
    t.after(async () => {
      server.resume();
      await Promise.all(both.map((c) => c.stop()));
    });
    for (const cli of both) assert.ok(await cli.waitFor("child_started", 20_000), cli.stderr.join("\n"));
    await delay(800);

    await t.test("a freeze shorter than the renew deadline: the children keep running", async () => {
      server.pause();
      await delay(900);
      server.resume();
      const resumedAt = performance.now();
      // Renewed after the freeze: the deadline it could have caused is gone.
      for (const cli of both) {
        const renewed = await until(() => cli.events("renewed").some((e) => e.at > resumedAt) || cli.events("lost").length > 0, FREEZE_RD + 2000);
        assert.ok(renewed !== undefined, `renewed after the freeze\n${cli.stderr.slice(-5).join("\n")}`);
      }
      for (const cli of both) {
        assert.equal(cli.events("lost").length, 0, cli.stderr.join("\n"));
        assert.equal(cli.events("child_started").length, 1);
        assert.ok(isRunning(cli.childPids()[0] ?? -1), "the same child still runs");
      }
    });

    await t.test("a freeze beyond the renew deadline: children stopped in time; --on-lost exit exits 76, --on-lost campaign leads again", async () => {
      // Where each lease runs out: nothing Redis applies during the freeze can shorten it.
      const expiries = await Promise.all(names.map((name) => server.expiryOf(leaseKey(name))));
      const frozenAt = performance.now();
      server.pause();
      const results = await Promise.all(
        both.map(async (cli) => ({ lost: await cli.waitFor("lost", FREEZE_RD + 5000), exited: await cli.waitFor("child_exited", 5000) })),
      );
      const exit = await exiting.exited;
      await delay(300);
      server.resume();
      results.forEach(({ lost, exited }, i) => {
        assert.equal(lost?.reason, "deadline");
        assert.ok(exited, "child stopped");
        const expiresAt = expiries[i] ?? 0;
        assert.ok(
          exited.at < expiresAt,
          `child stopped ${(exited.at - frozenAt).toFixed(0)}ms after the freeze, ${(expiresAt - exited.at).toFixed(0)}ms before the lease could pass`,
        );
      });
      assert.equal(exit.code, 76, exiting.stderr.join("\n"));
      const again = await campaigning.waitFor("acquired", 10_000, 2);
      assert.ok(again, "leads again once Redis is back");
      assert.ok(Number(again.term) > 0, "in a new term");
      assert.ok(await campaigning.waitFor("child_started", 5000, 2));
      campaigning.signal("SIGTERM");
      await campaigning.exited;
    });
  });

  test("an unreachable Redis: --no-wait exits 69; otherwise leader-run keeps campaigning, logging it, and leads once Redis is up", async (t) => {
    if (!requireRedis(t)) return;
    const port = await freePort();
    const url = `redis://127.0.0.1:${port}`;
    const noWait = new Cli(["--lock", url, "--name", leaseName(), "--no-wait", "--", "true"]);
    const waiting = new Cli(["--lock", url, "--name", leaseName(), ...TIMING, "--", "sleep", "30"]);
    t.after(() => Promise.all([noWait, waiting].map((c) => c.stop())));
    const exit = await noWait.exited;
    assert.equal(exit.code, 69, noWait.stderr.join("\n"));
    assert.match(noWait.stderr.join("\n"), /ECONNREFUSED|unavailable|reach/);
    assert.ok(await waiting.waitFor("acquire_failed", 20_000), "the failure is logged");
    const server = await RedisServer.start({ port });
    t.after(() => server.kill());
    assert.ok(await waiting.waitFor("child_started", 10_000), "leads once Redis is up");
    waiting.signal("SIGTERM");
    await waiting.exited;
  });

  test("a wrong or missing password exits 69 with one line that does not show the password", async (t) => {
    if (!requireRedis(t)) return;
    const password = "cli-secret-pw";
    const server = await RedisServer.start({ password });
    t.after(() => server.kill());
    const wrong = new Cli(["--lock", server.url, "--name", leaseName(), "--", "true"], { LEADER_RUN_REDIS_PASSWORD: `x${password}` });
    const none = new Cli(["--lock", server.url, "--name", leaseName(), "--", "true"], { LEADER_RUN_REDIS_PASSWORD: "" });
    const right = new Cli(["--lock", `${server.url}?password_env=MY_REDIS_PW`, "--name", leaseName(), "--", "true"], { MY_REDIS_PW: password });
    const [w, n, r] = await Promise.all([wrong.exited, none.exited, right.exited]);
    assert.equal(w.code, 69, wrong.stderr.join("\n"));
    assert.equal(n.code, 69, none.stderr.join("\n"));
    assert.equal(r.code, 0, right.stderr.join("\n"));
    for (const cli of [wrong, none]) {
      const errors = cli.stderr.filter((l) => /"level":"error"|^leader-run:/.test(l));
      assert.equal(errors.length, 1, cli.stderr.join("\n"));
      assert.ok(!cli.stderr.join("\n").includes(password));
    }
    assert.match(wrong.stderr.join("\n"), /rejected the credentials/);
    assert.match(none.stderr.join("\n"), /requires a password/);
  });
});

describe("leader-run --lock redis:// hand-over timing (real processes)", () => {
  test("SIGTERM to the leader hands over through the notification, well before the follower's next retry (retry period 4s)", async (t) => {
    if (!requireRedis(t)) return;
    const server = await RedisServer.start();
    t.after(() => server.kill());
    const name = leaseName();
    // A retry period far above the hand-over time: only the pub/sub wake-up can explain a take-over
    // before it, with seconds of slack for a loaded machine.
    const SLOW_RP = 4000;
    const slow = ["--lease-duration", "10s", "--renew-deadline", "6s", "--retry-period", "4s", "--kill-grace", "1s"];
    const a = new Cli(["--lock", server.url, "--name", name, ...slow, "--", "sleep", "30"]);
    const b = new Cli(["--lock", server.url, "--name", name, ...slow, "--", "sleep", "30"]);
    t.after(() => Promise.all([a, b].map((c) => c.stop())));
    const [leader, follower] = await leaderAndFollower(a, b);
    assert.ok(await leader.waitFor("child_started", 10_000));
    assert.ok(await until(() => lastLoggedFailure(follower) !== undefined, 10_000), "the follower tried and failed");
    await delay(300);
    // Without a wake-up the follower's next attempt comes at least one retry period after the last one
    // it logged (later ones are not logged, and only push it further out).
    const nextRetry = (lastLoggedFailure(follower) ?? 0) + SLOW_RP;
    const termAt = performance.now();
    leader.signal("SIGTERM");
    const acquired = await follower.waitFor("acquired", 5000);
    assert.ok(acquired, "the follower took over");
    const took = acquired.at - termAt;
    assert.ok(acquired.at < nextRetry, `hand-over took ${took.toFixed(0)}ms; the next retry was due after ${(nextRetry - termAt).toFixed(0)}ms`);
    assert.ok(took < 2500, `hand-over took ${took.toFixed(0)}ms`);
    const exit = await leader.exited;
    assert.notEqual(exit.code, 76);
  });
});
