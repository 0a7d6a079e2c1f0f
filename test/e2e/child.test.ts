import assert from "node:assert/strict";
import { once } from "node:events";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { E2E, GRACE_MS, TIMING, delay, marker, sleepers, useE2E, waitFor } from "./support.js";

/**
 * The child as the real leader-run command runs it: process-group stops (grandchildren included),
 * SIGKILL after the grace, exit-code pass-through, restarts, and usage errors that start nothing.
 */

let h: E2E;
useE2E((fresh) => (h = fresh));

describe("orphan protection", () => {
  test("a SIGKILL of leader-run at any moment around the child's start never leaves the command running", async () => {
    // Spawning takes milliseconds; a leader-run killed inside that window must not leave a command
    // that no watchdog knows about. Kill at spread-out moments just after acquiring, where the spawn is.
    const rounds = 4;
    const perRound = 4;
    for (let round = 0; round < rounds; round++) {
      const runs = Array.from({ length: perRound }, (_, i) => {
        const n = round * perRound + i;
        const m = marker();
        const r = h.spawn(`e2e-k${n}`, ["--lock", h.lockUrl, "--name", `kill-${n}`, "--log-format", "json", ...TIMING, "--", "sleep", m]);
        return { n, m, r };
      });
      await Promise.all(
        runs.map(async ({ n, r }) => {
          await r.waitForLog("acquired");
          await delay((n * 5) % 80);
          r.signal("SIGKILL");
          // "exit", not "close": an orphaned command would hold leader-run's stderr open.
          if (r.process.exitCode === null && r.process.signalCode === null) await once(r.process, "exit");
        }),
      );
      for (const { n, m } of runs) {
        // Either the command never started or the watchdog stops it (SIGTERM, then SIGKILL after the grace).
        await waitFor(`the command of run ${n} (killed ${(n * 5) % 80} ms after acquiring) to be gone`, () => sleepers(m).length === 0, 5000);
      }
    }
  });
});

describe("the child's process group", () => {
  test("a grandchild started by --shell is stopped with its parent", async () => {
    const m = marker();
    const r = h.run("e2e-a", [`sleep ${m} & wait`], ["--shell"]);
    await waitFor("the grandchild sleep to run", () => sleepers(m).length === 1);
    r.signal("SIGTERM");
    // The shell dies of the forwarded SIGTERM: 128 + 15.
    assert.equal(await r.exitCode(), 143, `${r}`);
    assert.deepEqual(sleepers(m), [], "the grandchild outlived leader-run");
  });

  test("a grandchild left behind by a child that exited on its own is stopped before leader-run exits", async () => {
    const m = marker();
    const r = h.run("e2e-a", [`sleep ${m} & echo started; exit 5`], ["--shell"]);
    assert.equal(await r.exitCode(), 5, `${r}`);
    assert.equal(r.stdout, "started\n", "the child writes to leader-run's stdout");
    assert.deepEqual(sleepers(m), [], "the straggler outlived leader-run");
    assert.ok(r.events().includes("stragglers"), r.stderr);
    // Released only after the group was gone.
    assert.equal((await h.leaseFile()).holderIdentity, "");
  });

  test("a child that ignores SIGTERM is SIGKILLed after --kill-grace", async () => {
    const m = marker();
    const r = h.run("e2e-a", h.child("e2e-a", m, "ignore-term"));
    await h.waitForChildEvent("the child to start", (e) => e.kind === "start");
    // The start line comes before the shell runs the sleep: without it, "the group is gone" would hold at once.
    await waitFor("the child's sleep to run", () => sleepers(m).length === 1);
    const sentAt = performance.now();
    r.signal("SIGTERM");
    await waitFor("the child's group to be gone", () => sleepers(m).length === 0, 10_000);
    const tookMs = performance.now() - sentAt;
    assert.equal(await r.exitCode(), 137, `${r}`);
    assert.ok(tookMs >= GRACE_MS - 50, `SIGKILL came ${tookMs.toFixed(0)} ms after SIGTERM, before the ${GRACE_MS} ms grace`);
    assert.ok(tookMs < GRACE_MS + 3000, `SIGKILL came only ${tookMs.toFixed(0)} ms after SIGTERM`);
    assert.ok(
      r.logs().some((l) => l.event === "killing" && l.signal === "SIGKILL"),
      `no "killing" SIGKILL line:\n${r.stderr}`,
    );
  });
});

describe("exit codes", () => {
  test("the child's exit code passes through", async () => {
    const r = h.run("e2e-a", ["sh", "-c", "exit 7"]);
    assert.equal(await r.exitCode(), 7, `${r}`);
  });

  test("a child that dies of signal N gives 128+N", async () => {
    const r = h.run("e2e-a", ["sh", "-c", "kill -USR1 $$"]);
    assert.equal(await r.exitCode(), 128 + 10, `${r}`);
  });

  test("a command that cannot be found gives 127", async () => {
    const r = h.run("e2e-a", ["/nonexistent/leader-run-e2e-command"]);
    assert.equal(await r.exitCode(), 127, `${r}`);
  });
});

describe("--restart", () => {
  /** A child that appends its start time (ms) to `runs` and fails until its `okOnRun`-th run. */
  function flaky(runs: string, okOnRun: number): string[] {
    const script = `n=$(cat "$1" 2>/dev/null | wc -l); echo "$(date +%s%N) $LEADER_RUN_FENCING_TOKEN" >> "$1"; [ $((n + 1)) -ge ${okOnRun} ] && exit 0; exit 3`;
    return ["sh", "-c", script, "flaky", runs];
  }

  async function runTimes(runs: string): Promise<{ ms: number; token: string }[]> {
    return (await readFile(runs, "utf8"))
      .trim()
      .split("\n")
      .map((l) => {
        const [ns = "", token = ""] = l.split(" ");
        return { ms: Number(ns.slice(0, -6)) + Number(ns.slice(-6)) / 1e6, token };
      });
  }

  test("--restart on-failure restarts a failing child after the delay, doubling it, in the same term", async () => {
    const runs = join(h.work, "runs");
    const r = h.run("e2e-a", flaky(runs, 3), ["--restart", "on-failure", "--restart-delay", "300ms"]);
    assert.equal(await r.exitCode(20_000), 0, `${r}`);
    const times = await runTimes(runs);
    assert.equal(times.length, 3, JSON.stringify(times));
    const [first, second, third] = times;
    assert.ok(first && second && third);
    assert.ok(second.ms - first.ms >= 300, `first restart after ${(second.ms - first.ms).toFixed(0)} ms`);
    assert.ok(third.ms - second.ms >= 600, `second restart after ${(third.ms - second.ms).toFixed(0)} ms`);
    assert.deepEqual(new Set(times.map((t) => t.token)).size, 1, "restarts must not start a new term");
    assert.equal(r.events().filter((e) => e === "restarting").length, 2, r.stderr);
  });

  test("--restart never exits with the failing child's code after one run", async () => {
    const runs = join(h.work, "runs");
    const r = h.run("e2e-a", flaky(runs, 3), ["--restart", "never"]);
    assert.equal(await r.exitCode(), 3, `${r}`);
    assert.equal((await runTimes(runs)).length, 1);
  });
});

describe("usage errors", () => {
  test("every usage error exits 64 with its one-line message and starts nothing", async () => {
    const base = (extra: string[]): string[] => ["--lock", h.lockUrl, "--name", h.name, ...extra];
    const child = (): string[] => h.child("e2e", marker());
    const cases: { what: string; args: string[]; message: RegExp }[] = [
      { what: "unknown option", args: [...base(["--bogus-option", ...TIMING]), "--", ...child()], message: /unknown option --bogus-option/ },
      { what: "missing command", args: base(TIMING), message: /missing command/ },
      { what: "empty command", args: [...base(TIMING), "--"], message: /missing command/ },
      { what: "bad duration", args: [...base(["--lease-duration", "3x", "--renew-deadline", "2s"]), "--", ...child()], message: /--lease-duration/ },
      {
        what: "renewDeadline >= leaseDuration",
        args: [...base(["--lease-duration", "2s", "--renew-deadline", "2s", "--retry-period", "300ms"]), "--", ...child()],
        message: /renew.?deadline/i,
      },
      {
        what: "unsafe kill grace",
        args: [...base(["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "300ms", "--kill-grace", "1s"]), "--", ...child()],
        message: /kill.?grace/i,
      },
      { what: "unknown lock scheme", args: ["--lock", "bogus://somewhere", "--name", h.name, ...TIMING, "--", ...child()], message: /bogus/ },
      { what: "bad --restart", args: [...base(["--restart", "sometimes", ...TIMING]), "--", ...child()], message: /--restart/ },
    ];
    const results = await Promise.all(
      cases.map(async (c) => {
        const p = h.spawn(c.what, c.args);
        return { c, code: await p.exitCode(), stderr: p.stderr, stdout: p.stdout };
      }),
    );
    for (const { c, code, stderr, stdout } of results) {
      assert.equal(code, 64, `${c.what}: exit ${code}\n${stderr}`);
      const lines = stderr.split("\n").filter((l) => l !== "");
      assert.equal(lines.length, 1, `${c.what}: expected one line on stderr, got:\n${stderr}`);
      assert.match(lines[0] ?? "", /^leader-run: /, c.what);
      assert.match(lines[0] ?? "", c.message, c.what);
      assert.equal(stdout, "", c.what);
    }
    assert.deepEqual(await h.childEvents(), [], "a child was started");
    assert.deepEqual(await readdir(h.lockDir), [], "the lock directory was touched");
  });
});
