import { afterEach, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BIN, delay, E2E, LEASE_MS, marker, sleepers, TIMING, waitFor } from "./support.js";

/**
 * Issue #9's guard cases, end to end: whatever happens to leader-run (stopped, blocked on its stderr,
 * crashed by a bug, its guard killed), at most one copy of the command runs, and never past the moment
 * another candidate may take the lease: the last renewal sent + leaseDuration. Those moments are bounded
 * from the outside: a renewal can only have been sent before leader-run was frozen or blocked.
 */

let h: E2E | undefined;

afterEach(async () => {
  const leaks = (await h?.cleanup()) ?? [];
  h = undefined;
  assert.deepEqual(leaks, [], "processes were left behind");
});

async function world(): Promise<E2E> {
  h = await E2E.create();
  return h;
}

/** Every `everyMs`, counts the live `sleep <m>`; `stop()` returns the largest count seen. */
function copiesSampler(m: string, everyMs = 5): { stop(): Promise<number> } {
  let running = true;
  let most = 0;
  const loop = (async () => {
    while (running) {
      most = Math.max(most, sleepers(m).length);
      await delay(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return most;
    },
  };
}

function procState(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 1).trim().split(/\s+/)[0] ?? "";
  } catch {
    return "";
  }
}

function wchan(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/wchan`, "utf8");
  } catch {
    return "";
  }
}

/** The guard of leader-run `pid`: `sh …/guard.sh <pid> <format>`. */
function guardOf(pid: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    execFile("pgrep", ["-f", `guard\\.sh ${pid} `], { encoding: "utf8" }, (_err, out) => {
      const found = String(out ?? "").split("\n").filter((l) => l.trim() !== "").map(Number);
      resolve(found[0]);
    });
  });
}

describe("the guard stops the child by the lease's deadline", () => {
  test("SIGSTOP of leader-run for longer than the lease: the child is gone before anyone may take over", async () => {
    const w = await world();
    const m = marker();
    // The child ignores SIGTERM: only the guard's SIGKILL can end it while leader-run is frozen.
    const leader = w.run("a", ["sh", "-c", `trap '' TERM; exec sleep ${m}`]);
    await leader.waitForLog("child_started");
    await waitFor("the child", () => sleepers(m).length === 1);
    await leader.waitForLog("renewed", 10_000).catch(() => undefined);
    leader.signal("SIGSTOP");
    try {
      const took = await waitFor("the child's group to be gone", () => sleepers(m).length === 0, 10_000);
      // The last renewal was sent before the freeze, so nobody may take over before frozenAt + LD.
      assert.ok(took < LEASE_MS, `the child ran ${Math.round(took)} ms into the freeze; another leader may start at ${LEASE_MS} ms`);
    } finally {
      leader.signal("SIGCONT");
    }
    assert.equal(await leader.exitCode(), 76);
  });

  test("leader-run blocked on a stderr nobody drains: the child is still stopped in time", async () => {
    const w = await world();
    const [m, reader] = [marker(), marker()];
    // stderr into a real pipe (Node's own stdio pipes are socket pairs) whose reader never reads: once
    // the child has filled it, leader-run's next log line (a debug "renewed" within a retry period)
    // blocks, since Node writes pipes synchronously.
    const words = [process.execPath, BIN, "--lock", w.lockUrl, "--name", w.name, "--identity", `blocked-${m}`, "--log-level", "debug", ...TIMING];
    const quoted = words.map((x) => `'${x}'`).join(" ");
    // The child ignores SIGTERM, so the guard's SIGKILL must follow although its own report of the
    // SIGTERM is stuck on the same full pipe.
    const proc = spawn("sh", ["-c", `${quoted} -- sh -c 'trap "" TERM; head -c 200000 /dev/zero >&2 & exec sleep ${m}' 2>&1 >/dev/null | sleep ${reader}`], {
      stdio: "ignore",
      cwd: w.work,
    });
    let pid: number | undefined;
    try {
      await waitFor("the child", () => sleepers(m).length === 1, 15_000);
      pid = await new Promise<number | undefined>((resolve) => {
        execFile("pgrep", ["-f", `identity blocked-${m.replace(".", "\\.")}`], { encoding: "utf8" }, (_err, out) => resolve(Number(String(out).split("\n")[0]) || undefined));
      });
      assert.ok(pid !== undefined, "leader-run not found");
      const leaderPid = pid;
      await waitFor("leader-run to block on its stderr", () => wchan(leaderPid).endsWith("pipe_write"), 20_000);
      const took = await waitFor("the child's group to be gone", () => sleepers(m).length === 0, 10_000);
      assert.ok(took < LEASE_MS, `the child ran ${Math.round(took)} ms after leader-run blocked; another leader may start at ${LEASE_MS} ms`);
    } finally {
      if (pid !== undefined) process.kill(pid, "SIGKILL");
      for (const p of sleepers(reader)) process.kill(p, "SIGKILL");
      await new Promise((resolve) => (proc.exitCode !== null ? resolve(undefined) : proc.once("exit", resolve)));
    }
  });

  test("--on-lost campaign after a pause: never two copies of the command, and it runs again", async () => {
    const w = await world();
    const m = marker();
    // A long grace: a stop that starts after the pause and waits all of it ends past the lease
    // (work_overran), which is when a leader-run used to campaign again with the old child still there.
    const timing = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "300ms", "--kill-grace", "900ms"];
    const leader = w.run("a", ["sh", "-c", `trap '' TERM; exec sleep ${m}`], ["--on-lost", "campaign"], timing);
    await leader.waitForLog("child_started");
    await waitFor("the child", () => sleepers(m).length === 1);
    const first = sleepers(m)[0];
    const sampler = copiesSampler(m);
    try {
      // Past the renew deadline, short of the lease: leader-run wakes up to a lost lease with a child
      // that ignores SIGTERM, then campaigns again as the same identity and may re-acquire at once.
      leader.signal("SIGSTOP");
      await delay(2500);
      leader.signal("SIGCONT");
      await waitFor("a second child", () => sleepers(m).some((pid) => pid !== first), 20_000);
    } finally {
      leader.signal("SIGCONT");
    }
    const most = await sampler.stop();
    assert.equal(most, 1, "two copies of the command ran at once");
    leader.signal("SIGTERM");
    await leader.exitCode();
  });
});

describe("leader-run itself", () => {
  test("Ctrl-Z (SIGTSTP), SIGTTIN and SIGTTOU do not stop leader-run while its child runs", async () => {
    const w = await world();
    const m = marker();
    const leader = w.run("a", ["sleep", m]);
    await leader.waitForLog("child_started");
    for (const sig of ["SIGTSTP", "SIGTTIN", "SIGTTOU"] as const) leader.signal(sig);
    await leader.waitForLog((l) => l.event === "signal_ignored" && l.signal === "SIGTSTP");
    await delay(300);
    assert.notEqual(procState(leader.pid), "T", "leader-run was stopped");
    leader.signal("SIGTERM");
    assert.equal(await leader.exitCode(), 143);
    assert.deepEqual(sleepers(m), []);
  });

  test("an unhandled rejection stops the child and exits 70", async () => {
    const w = await world();
    const m = marker();
    const trigger = join(w.work, "fault");
    const preload = join(w.work, "fault.mjs");
    await writeFile(
      preload,
      `import { existsSync } from "node:fs";\nconst t = setInterval(() => { if (existsSync(${JSON.stringify(trigger)})) { clearInterval(t); void Promise.reject(new Error("injected fault")); } }, 20);\nt.unref();\n`,
    );
    const leader = w.spawn("a", ["--lock", w.lockUrl, "--name", w.name, "--identity", "a", "--log-format", "json", ...TIMING, "--", "sleep", m], {
      NODE_OPTIONS: `--import ${preload}`,
    });
    await leader.waitForLog("child_started");
    await waitFor("the child", () => sleepers(m).length === 1);
    await writeFile(trigger, "");
    assert.equal(await leader.exitCode(), 70);
    assert.ok(leader.logs().some((l) => l.event === "internal_error" && String(l.error).includes("injected fault")), leader.stderr);
    await waitFor("the child to be gone", () => sleepers(m).length === 0, 5000);
  });
});

describe("the guard itself", () => {
  test("no guard, no child: leader-run exits 70 with a one-line error and never runs the command", async () => {
    const w = await world();
    const ran = join(w.work, "ran");
    const leader = w.spawn("a", ["--lock", w.lockUrl, "--name", w.name, "--identity", "a", "--log-format", "json", ...TIMING, "--", "sh", "-c", `: > ${ran}`], {
      LEADER_RUN_GUARD_SHELL: join(w.work, "no-such-shell"),
    });
    assert.equal(await leader.exitCode(), 70);
    const line = await leader.waitForLog("guard_unavailable");
    assert.match(String(line.msg), /no child is started without a live guard/);
    assert.ok(!leader.stderr.includes("    at "), `a stack trace was printed:\n${leader.stderr}`);
    assert.throws(() => readFileSync(ran), "the command ran without a guard");
  });

  test("a SIGKILLed guard is restarted and the child runs on past the old deadline", async () => {
    const w = await world();
    const m = marker();
    const leader = w.run("a", ["sleep", m], ["--log-level", "debug"]);
    await leader.waitForLog("child_started");
    await waitFor("the child", () => sleepers(m).length === 1);
    const guard = await guardOf(leader.pid);
    assert.ok(guard !== undefined, "no guard found");
    process.kill(guard, "SIGKILL");
    await leader.waitForLog("guard_exited");
    await leader.waitForLog((l) => l.event === "guard_started" && l.pid !== guard);
    // Past the first guard's last deadline: its orphaned timers must have been cancelled with it.
    await delay(LEASE_MS + 500);
    assert.equal(sleepers(m).length, 1, "the child was stopped although leader-run kept renewing");
    leader.signal("SIGTERM");
    assert.equal(await leader.exitCode(), 143);
  });

  test("a guard that dies and cannot be restarted: the child is stopped and leader-run exits 70", async () => {
    const w = await world();
    const m = marker();
    // A guard shell that works once: every later guard fails at once.
    const once = join(w.work, "guard-once.sh");
    const flag = join(w.work, "guard-started");
    await writeFile(once, `#!/bin/sh\n[ -e ${flag} ] && exit 1\n: > ${flag}\nexec /bin/sh "$@"\n`, { mode: 0o755 });
    const leader = w.spawn("a", ["--lock", w.lockUrl, "--name", w.name, "--identity", "a", "--log-format", "json", ...TIMING, "--", "sleep", m], {
      LEADER_RUN_GUARD_SHELL: once,
    });
    await leader.waitForLog("child_started");
    await waitFor("the child", () => sleepers(m).length === 1);
    const guard = await guardOf(leader.pid);
    assert.ok(guard !== undefined, "no guard found");
    process.kill(guard, "SIGKILL");
    assert.equal(await leader.exitCode(), 70);
    assert.ok(leader.logs().some((l) => l.event === "guard_unavailable"), leader.stderr);
    assert.deepEqual(sleepers(m), []);
  });

  test("SIGKILL of leader-run and its guard together leaves no orphan (parent-death signal)", async () => {
    const w = await world();
    const m = marker();
    const leader = w.run("a", ["sleep", m]);
    await leader.waitForLog("child_started");
    await waitFor("the child", () => sleepers(m).length === 1);
    const guard = await guardOf(leader.pid);
    assert.ok(guard !== undefined, "no guard found");
    process.kill(-guard, "SIGKILL"); // the guard and its timers
    leader.signal("SIGKILL");
    const took = await waitFor("the child to be gone", () => sleepers(m).length === 0, 5000);
    assert.ok(took < 1500, `the child outlived leader-run and its guard by ${Math.round(took)} ms`);
    await leader.exit();
  });
});
