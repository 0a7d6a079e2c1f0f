import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startChild } from "../../src/child/supervisor.js";
import { Guard, GuardUnavailableError, GUARD_SCRIPT } from "../../src/child/guard.js";
import { groupExists, groupHasLiveMembers } from "../../src/child/process-group.js";
import type { ChildEvent } from "../../src/child/events.js";
import { childEnv, cleanup, isRunning, marker, sleepers, waitFor } from "./fixtures/util.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/supervise.ts", import.meta.url));
const pgids: number[] = [];
const pids: number[] = [];
/** Guards' sessions: their timers live on in them when a test kills only the guard. */
const guardGroups: number[] = [];
const dir = mkdtempSync(join(tmpdir(), "leader-run-guard-"));

after(() => {
  const left = cleanup([...pgids, ...guardGroups], pids);
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(left, [], "marked sleep processes were left behind");
});

interface Supervisor {
  proc: ChildProcess;
  info: { pid: number; childPid: number; pgid: number; guardPid: number };
  stderr: () => string;
  /** Its exit code, once its pipes closed too: only then is all of its stderr in. */
  closed: Promise<number | null>;
}

/** Starts the fixture (a stand-in for leader-run) and waits for its report line. */
async function supervise(args: object): Promise<Supervisor> {
  const proc = spawn(process.execPath, ["--import", "tsx", FIXTURE, JSON.stringify(args)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  pids.push(proc.pid ?? 0);
  let err = "";
  proc.stderr?.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const closed = new Promise<number | null>((resolve) => proc.once("close", (code) => resolve(code)));
  const lines = createInterface({ input: proc.stdout! });
  const first = await Promise.race([
    new Promise<string>((resolve) => lines.once("line", resolve)),
    closed.then((code) => Promise.reject(new Error(`fixture exited ${code} before reporting: ${err}`))),
  ]);
  lines.close();
  const info = JSON.parse(first) as Supervisor["info"];
  pgids.push(info.pgid);
  pids.push(info.guardPid);
  guardGroups.push(info.guardPid);
  return { proc, info, stderr: () => err, closed };
}

/**
 * Waits for the guard's report on the shared stderr pipe. The report is written after the signal is
 * sent, so the group can be seen dead (and the guard gone) before the line reaches this process.
 */
async function reported(sup: Supervisor, line: RegExp): Promise<void> {
  try {
    await waitFor(`the guard to report ${line}`, () => line.test(sup.stderr()), 5000);
  } catch {
    assert.match(sup.stderr(), line);
  }
}

/** Whether the process ignores signal `n` (SigIgn in /proc/<pid>/status). */
function ignores(pid: number, n: number): boolean {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/^SigIgn:\s*([0-9a-f]+)$/m);
    return line?.[1] !== undefined && (BigInt(`0x${line[1]}`) & (1n << BigInt(n - 1))) !== 0n;
  } catch {
    return false;
  }
}


/**
 * A process group nobody reaps, as after leader-run's death where PID 1 reaps orphans late or never:
 * its leader (`sleep <leader marker>`) is the child of a process that never waits (`sleep <parent
 * marker>`), and runs one member in the background (`<member> <member marker>`, ignoring SIGTERM with
 * `ignoreTerm`). Needs setsid(1) (util-linux) for a group of its own.
 */
async function zombieableGroup(member: string, ignoreTerm: boolean): Promise<{ pgid: number; memberPid: number; parent: ChildProcess; markers: string[] }> {
  const markers = [marker(), marker(), marker()];
  const script = join(dir, "zombieable.sh");
  writeFileSync(script, `[ "$4" = ignore ] && trap '' TERM\n"$1" "$2" &\ntrap - TERM\necho $$ $!\nexec sleep "$3"\n`);
  const parent = spawn("sh", ["-c", `setsid sh "$0" "$@" & exec sleep ${markers[2]}`, script, member, markers[0]!, markers[1]!, ignoreTerm ? "ignore" : "-"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  pids.push(parent.pid ?? 0);
  const lines = createInterface({ input: parent.stdout! });
  const line = await new Promise<string>((resolve) => lines.once("line", resolve));
  lines.close();
  const [pgid = 0, memberPid = 0] = line.split(" ").map(Number);
  pgids.push(pgid);
  return { pgid, memberPid, parent, markers };
}

/** The guard script on its own, as leader-run starts it; `watch`es `pgid` with no deadline, `graceCs`. */
async function rawGuard(shell: string[], pgid: number, graceCs: number, env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LC_ALL: "C" }) {
  const [cmd = "sh", ...rest] = shell;
  const proc = spawn(cmd, [...rest, GUARD_SCRIPT, String(process.pid), "text"], { stdio: ["pipe", "pipe", "pipe"], detached: true, env });
  pids.push(proc.pid ?? 0);
  guardGroups.push(proc.pid ?? 0);
  let err = "";
  proc.stderr!.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  const exited = new Promise<number>((resolve) => proc.once("exit", () => resolve(performance.now())));
  const lines = createInterface({ input: proc.stdout! });
  const acked = new Promise<string>((resolve) => lines.once("line", resolve));
  proc.stdin!.write(`watch ${pgid} TERM ${graceCs} 0 0\n`);
  assert.equal(await acked, `ack ${pgid}`);
  lines.close();
  return { proc, exited, stderr: () => err };
}

/** The absolute path of a program on PATH. */
function execPathOf(program: string): string {
  const found = (process.env.PATH ?? "/usr/bin:/bin").split(":").map((d) => join(d, program)).find((p) => existsSync(p));
  assert.ok(found, `${program} is not on PATH`);
  return found;
}

const hasSetsid = ["/usr/bin/setsid", "/bin/setsid"].some((p) => existsSync(p));


/** The guard must behave the same under every POSIX sh it may meet as /bin/sh. */
const SHELLS: Array<{ name: string; argv: string[] }> = [
  { name: "dash", argv: ["dash"] },
  { name: "busybox ash", argv: ["busybox", "ash"] },
  { name: "bash", argv: ["bash"] },
].filter((s) => {
  const found = ["/usr/bin", "/bin"].some((d) => existsSync(join(d, s.argv[0] ?? "")));
  if (!found && process.env.CI === "true") throw new Error(`${s.argv[0]} is missing: the guard must be tested under it`);
  return found;
});

for (const { name, argv } of SHELLS) {
  describe(`guard under ${name}`, () => {
    test("SIGKILL of the supervising process stops the child's whole group within a few seconds", async () => {
      const [m1, m2] = [marker(), marker()];
      const sup = await supervise({ command: [`sleep ${m1} & sleep ${m2}; wait`], shell: true, killGraceMs: 1000, guardShell: argv });
      assert.ok(sup.info.guardPid > 0, "the guard runs alongside the child");
      await waitFor("both grandchildren", () => sleepers(m1).length === 1 && sleepers(m2).length === 1);

      sup.proc.kill("SIGKILL");
      const took = await waitFor(
        "the group to be stopped",
        () => !groupHasLiveMembers(sup.info.pgid) && sleepers(m1).length === 0 && sleepers(m2).length === 0,
        8000,
      );
      assert.ok(took < 5000, `group stopped ${Math.round(took)} ms after the supervisor died`);
      await waitFor("the guard to exit", () => !isRunning(sup.info.guardPid), 5000);
      await reported(sup, new RegExp(`sent SIGTERM to process group ${sup.info.pgid}`));
    });

    test("after the supervisor dies, a group left as zombies nobody reaps counts as gone: the guard ends long before the grace", async (t) => {
      if (!hasSetsid) return t.skip("setsid (util-linux) is missing");
      const g = await zombieableGroup("sleep", false);
      const guard = await rawGuard(argv, g.pgid, 1000);
      try {
        const eof = performance.now();
        guard.proc.stdin!.end();
        const took = (await guard.exited) - eof;
        assert.deepEqual(sleepers(g.markers[0]), [], "the member survived");
        assert.deepEqual(sleepers(g.markers[1]), [], "the leader survived");
        // What kept the guard until its SIGKILL time before: kill -0 still finds the group.
        assert.ok(groupExists(g.pgid), "the group's zombies were reaped: the test proves nothing");
        assert.ok(took < 3000, `the guard ended ${Math.round(took)} ms after leader-run's death; the grace was 10 s`);
        assert.match(guard.stderr(), new RegExp(`sent SIGTERM to process group ${g.pgid}`));
      } finally {
        g.parent.kill("SIGKILL");
      }
    });

    test("a zombie group leader with a live member (named with spaces and ')') is guarded until SIGKILL", async (t) => {
      if (!hasSetsid) return t.skip("setsid (util-linux) is missing");
      // /proc/<pid>/stat shows the name in parentheses: a name that looks like the fields of a zombie
      // must not make the live member look like one.
      const bin = join(dir, "bin");
      mkdirSync(bin, { recursive: true });
      const tricky = join(bin, "a) Z 1 2");
      if (!existsSync(tricky)) symlinkSync(execPathOf("sleep"), tricky);
      const g = await zombieableGroup(tricky, true);
      // A 6 s grace: the checks below must come well before it even on a loaded machine.
      const guard = await rawGuard(argv, g.pgid, 600);
      try {
        const eof = performance.now();
        guard.proc.stdin!.end();
        await waitFor("the leader to be a zombie", () => sleepers(g.markers[1]).length === 0, 5000);
        // Several of the guard's stopping-phase looks have passed by then (20, 40, 80, 100 ms steps).
        await new Promise((r) => setTimeout(r, Math.max(0, eof + 1500 - performance.now())));
        assert.ok(isRunning(g.memberPid), "the member that ignores SIGTERM was killed before the grace");
        assert.ok(isRunning(guard.proc.pid ?? 0), "the guard left a group with a live member");
        const took = (await guard.exited) - eof;
        assert.ok(took >= 5600, `the guard ended ${Math.round(took)} ms after leader-run's death, before the 6 s grace`);
        await waitFor("the member to be killed", () => !isRunning(g.memberPid), 5000);
        // The report comes from a background subshell after the kill, so it may reach us a little later.
        const killed = new RegExp(`sent SIGKILL to process group ${g.pgid}`);
        await waitFor("the guard's SIGKILL report", () => killed.test(guard.stderr()), 5000).catch(() => undefined);
        assert.match(guard.stderr(), killed);
      } finally {
        g.parent.kill("SIGKILL");
      }
    });

    test("without awk nothing proves the zombies dead: the guard waits for its SIGKILL time", async (t) => {
      if (!hasSetsid) return t.skip("setsid (util-linux) is missing");
      const bin = join(dir, `no-awk-${name.replace(/ /g, "-")}`);
      mkdirSync(bin, { recursive: true });
      for (const tool of ["sleep", "date", "cat"]) symlinkSync(execPathOf(tool), join(bin, tool));
      const g = await zombieableGroup("sleep", false);
      const [cmd = "sh", ...rest] = argv;
      const guard = await rawGuard([execPathOf(cmd), ...rest], g.pgid, 200, { PATH: bin, LC_ALL: "C" });
      try {
        const eof = performance.now();
        guard.proc.stdin!.end();
        const took = (await guard.exited) - eof;
        assert.ok(took >= 1600, `the guard ended ${Math.round(took)} ms after leader-run's death, before the 2 s grace`);
        assert.equal(guard.stderr().includes("not found"), false, `a missing awk was reported: ${guard.stderr()}`);
      } finally {
        g.parent.kill("SIGKILL");
      }
    });

    test("after the supervisor dies, a group that ignores the kill signal is SIGKILLed after the grace", async () => {
      const m = marker();
      const grace = 1500;
      const sup = await supervise({ command: [`trap '' TERM; sleep ${m} & wait`], shell: true, killGraceMs: grace, guardShell: argv });
      await waitFor("the sleeper", () => sleepers(m).length === 1);

      sup.proc.kill("SIGKILL");
      const took = await waitFor("the group to be killed", () => !groupHasLiveMembers(sup.info.pgid), grace + 8000);
      assert.ok(took >= grace * 0.8, `group died ${Math.round(took)} ms after the supervisor, before the ${grace} ms grace`);
      assert.ok(took < grace + 5000, `group died only ${Math.round(took)} ms after the supervisor`);
      await waitFor("the guard to exit", () => !isRunning(sup.info.guardPid), 5000);
      await reported(sup, new RegExp(`sent SIGKILL to process group ${sup.info.pgid}`));
    });

    test("a SIGSTOPped supervisor's child is stopped by the deadline: signal at signalAt, SIGKILL by killAt", async () => {
      const m = marker();
      // The child ignores SIGTERM, so only the SIGKILL at killAt can end it.
      const sup = await supervise({
        command: [`trap '' TERM; sleep ${m} & wait`],
        shell: true,
        killGraceMs: 60_000,
        guardShell: argv,
        // Deadlines well above the extension period, so a loaded machine cannot miss one before the freeze.
        deadline: { signalInMs: 2000, killInMs: 3000 },
        extendEveryMs: 200,
      });
      await waitFor("the sleeper", () => sleepers(m).length === 1);
      sup.proc.kill("SIGSTOP");
      const frozenAt = performance.now();
      try {
        await waitFor("the group to be killed", () => !groupHasLiveMembers(sup.info.pgid), 10_000);
        const took = performance.now() - frozenAt;
        // The last extension was sent before the freeze: SIGKILL is due at most killInMs after it.
        // killAt was at most 3000 ms after the freeze; allow the guard's own latency on a loaded machine.
        assert.ok(took < 3000 + 1000, `group died ${Math.round(took)} ms after the freeze; killAt was 3000 ms after the last extension`);
        assert.ok(took > 2000, `group died ${Math.round(took)} ms after the freeze, before its deadline`);
      } finally {
        sup.proc.kill("SIGKILL");
        sup.proc.kill("SIGCONT");
      }
    });

    test("a SIGSTOPped guard still fires: its timers are separate processes", async () => {
      const m = marker();
      const sup = await supervise({
        command: ["sleep", m],
        shell: false,
        killGraceMs: 60_000,
        guardShell: argv,
        deadline: { signalInMs: 1500, killInMs: 2500 },
      });
      const startedAt = performance.now();
      process.kill(sup.info.guardPid, "SIGSTOP");
      try {
        const took = await waitFor("the group to be stopped", () => !groupHasLiveMembers(sup.info.pgid), 10_000);
        assert.ok(took < 1500 + 1000, `group stopped ${Math.round(performance.now() - startedAt)} ms after the deadline was set`);
      } finally {
        process.kill(sup.info.guardPid, "SIGCONT");
        sup.proc.kill("SIGKILL");
      }
    });

    test("extensions keep the child running past its first deadline", async () => {
      const m = marker();
      const sup = await supervise({
        command: ["sleep", m],
        shell: false,
        killGraceMs: 1000,
        guardShell: argv,
        // Generous against a loaded machine: only a 1.5 s stall of the fixture's event loop lets it fire.
        deadline: { signalInMs: 1500, killInMs: 2500 },
        extendEveryMs: 100,
      });
      await new Promise((r) => setTimeout(r, 4000));
      assert.equal(sleepers(m).length, 1, "the child was killed although its deadline kept moving");
      assert.ok(groupHasLiveMembers(sup.info.pgid));
      sup.proc.kill("SIGKILL");
      await waitFor("the group to be stopped", () => !groupHasLiveMembers(sup.info.pgid), 8000);
    });

    test("SIGKILL of the supervisor and its guard's whole session together: the parent-death signal stops the child", async (t) => {
      if (!existsSync("/usr/bin/setpriv")) {
        if (process.env.CI === "true") throw new Error("setpriv (util-linux) is missing");
        t.skip("setpriv is missing: no parent-death signal on this system");
        return;
      }
      const m = marker();
      // No deadline: neither a timer nor the guard can act; only the kernel's parent-death signal can.
      const sup = await supervise({ command: ["sleep", m], shell: false, killGraceMs: 60_000, guardShell: argv });
      await waitFor("the sleeper", () => sleepers(m).length === 1);
      process.kill(-sup.info.guardPid, "SIGKILL");
      sup.proc.kill("SIGKILL");
      const took = await waitFor("the child to be stopped", () => !groupHasLiveMembers(sup.info.pgid), 5000);
      assert.ok(took < 2000, `child stopped ${Math.round(took)} ms after both died`);
    });

    test("the guard ignores the stop and job-control signals meant for leader-run", async () => {
      const guard = new Guard({ stderrFormat: "quiet", shell: argv });
      await guard.start();
      const pid = guard.pid;
      assert.ok(pid !== undefined);
      pids.push(pid);
      guardGroups.push(pid);
      for (const n of [1, 2, 3, 15, 20, 21, 22]) assert.ok(ignores(pid, n), `signal ${n} is not ignored`);
      for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGTSTP"] as const) process.kill(pid, sig);
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(isRunning(pid), "the guard survived");
      await guard.close();
      assert.equal(isRunning(pid), false);
    });
  });
}

describe("guard lifecycle", () => {
  test("the guard never keeps the supervisor alive and exits when it exits", async () => {
    const sup = await supervise({ command: ["sleep", "0.1"], shell: false, killGraceMs: 1000, mode: "finish" });
    const code = await new Promise<number | null>((resolve) => {
      if (sup.proc.exitCode !== null) resolve(sup.proc.exitCode);
      else sup.proc.once("exit", (c) => resolve(c));
    });
    assert.equal(code, 0);
    await waitFor("the guard to exit", () => !isRunning(sup.info.guardPid), 5000);
    await sup.closed;
    assert.equal(sup.stderr(), "", "nothing was killed");
  });

  test("a killed guard is restarted, guards the running child again, and its old timers are gone", async () => {
    const events: ChildEvent[] = [];
    const guard = new Guard({ stderrFormat: "quiet", log: (e) => events.push(e) });
    const m = marker();
    let now = performance.now();
    guard.extend({ signalAt: now + 1500, killAt: now + 2000 });
    const child = await startChild({ command: ["sleep", m], shell: false, env: childEnv(), killSignal: "SIGTERM", killGraceMs: 2000, guard });
    pgids.push(child.pgid);
    const first = guard.pid;
    assert.ok(first !== undefined);
    guardGroups.push(first);
    process.kill(first, "SIGKILL");
    await waitFor("a new guard", () => guard.pid !== undefined && guard.pid !== first, 5000);
    guardGroups.push(guard.pid ?? 0);
    assert.ok(events.some((e) => e.type === "guard_exited" && e.signal === "SIGKILL"));
    // Keep extending past the first guard's deadline: its orphaned timers must not fire.
    const extending = setInterval(() => {
      now = performance.now();
      guard.extend({ signalAt: now + 1500, killAt: now + 2000 });
    }, 200);
    await new Promise((r) => setTimeout(r, 2800));
    clearInterval(extending);
    assert.equal(sleepers(m).length, 1, "the dead guard's timer killed the child");

    // Closing the pipe looks to the guard exactly like our death: it must stop the child.
    await guard.close();
    const exit = await child.exited;
    assert.equal(exit.signal, "SIGTERM");
    assert.deepEqual(sleepers(m), []);
  });

  test("a guard started ahead of time that died is replaced before the gate opens, and guards the child", async () => {
    const events: ChildEvent[] = [];
    const guard = new Guard({ stderrFormat: "quiet", log: (e) => events.push(e) });
    // Started idle, as a waiting standby does (ChildControl.prepare), then killed before it is used:
    // startChild is called at once, before this process has necessarily seen the guard's exit.
    await guard.start();
    const first = guard.pid;
    assert.ok(first !== undefined);
    guardGroups.push(first);
    process.kill(first, "SIGKILL");
    const now = performance.now();
    guard.extend({ signalAt: now + 60_000, killAt: now + 61_000 });
    const m = marker();
    const child = await startChild({ command: ["sleep", m], shell: false, env: childEnv(), killSignal: "SIGTERM", killGraceMs: 2000, guard, log: (e) => events.push(e) });
    pgids.push(child.pgid);
    guardGroups.push(guard.pid ?? 0);
    assert.ok(guard.pid !== undefined && guard.pid !== first, "the dead guard was not replaced");
    const order = events.map((e) => e.type).filter((t) => t === "guard_started" || t === "guard_armed" || t === "child_started");
    assert.deepEqual(order.slice(-3), ["guard_started", "guard_armed", "child_started"], "the gate opened before a live guard acknowledged");
    await waitFor("the command to run", () => sleepers(m).length === 1, 5000);
    // The replacement guards it: closing its pipe looks like our death and stops the child.
    await guard.close();
    const exit = await child.exited;
    assert.equal(exit.signal, "SIGTERM");
    assert.deepEqual(sleepers(m), []);
  });

  test("a watch still waiting for the guard to start, unwatched meanwhile, rejects and leaves the group unwatched", async () => {
    const guard = new Guard({ stderrFormat: "quiet" });
    const pgid = 999_999; // never signalled: the guard only records it
    const now = performance.now();
    guard.extend({ signalAt: now + 60_000, killAt: now + 61_000 });
    try {
      const watching = guard.watch(pgid, "SIGTERM", 1000); // the guard is not started yet
      guard.unwatch(pgid); // the acquiring write failed meanwhile (ChildControl.disarm)
      await assert.rejects(watching, GuardUnavailableError);
      assert.deepEqual(guard.watching(), [], "the group would be watched for good, its pid free for reuse");
    } finally {
      guardGroups.push(guard.pid ?? 0);
      await guard.close();
    }
  });

  test("an answer to an earlier watch of a group does not pass for a later one's", async () => {
    // A guard (the real protocol) that reads three lines before it answers only the first watch: the
    // later watch of the same group must not count as answered by it.
    const fake = join(dir, "answers-first-only.sh");
    writeFileSync(
      fake,
      [
        "IFS=' ' read -r cmd tok; echo \"pong $tok\"",
        "IFS=' ' read -r cmd a b c d e f",
        "IFS=' ' read -r cmd2 rest",
        "IFS=' ' read -r cmd3 rest",
        'printf \'ack %s%s\\n\' "$a" "${f:+ $f}"',
        "exec sleep 5",
        "",
      ].join("\n"),
    );
    const guard = new Guard({ stderrFormat: "quiet", script: fake, ackTimeoutMs: 1500 });
    const pgid = 999_998;
    const now = performance.now();
    guard.extend({ signalAt: now + 60_000, killAt: now + 61_000 });
    await guard.start();
    guardGroups.push(guard.pid ?? 0);
    try {
      const first = guard.watch(pgid, "SIGTERM", 1000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      guard.unwatch(pgid);
      const second = guard.watch(pgid, "SIGTERM", 1000);
      await first;
      await assert.rejects(second, GuardUnavailableError, "the first watch's answer acknowledged the second");
    } finally {
      if (guard.pid !== undefined) process.kill(guard.pid, "SIGKILL");
      await guard.close();
    }
  });

  test("fail-closed: without a guard, the command never starts", async () => {
    const ran = join(dir, "ran");
    for (const guard of [
      new Guard({ stderrFormat: "quiet", script: join(dir, "missing.sh") }),
      new Guard({ stderrFormat: "quiet", shell: [join(dir, "no-such-shell")] }),
      // A shell that starts but never answers.
      new Guard({ stderrFormat: "quiet", shell: ["sh", "-c", "exec sleep 3"], ackTimeoutMs: 500 }),
    ]) {
      await assert.rejects(
        startChild({ command: [`: > ${ran}`], shell: true, env: childEnv(), killSignal: "SIGTERM", killGraceMs: 1000, guard }),
        GuardUnavailableError,
      );
      await guard.close();
    }
    assert.equal(existsSync(ran), false, "the command ran without a guard");
    assert.ok(existsSync(GUARD_SCRIPT));
  });
});
