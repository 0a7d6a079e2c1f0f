import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { ChildSpawnError, prepareGate, startChild, type ChildHandle, type StartChildOptions } from "../../src/child/supervisor.js";
import { Guard } from "../../src/child/guard.js";
import { countLiveMembers, groupHasLiveMembers, parseGroupStat, signalNumber } from "../../src/child/process-group.js";
import type { ChildEvent } from "../../src/child/events.js";
import { childEnv, cleanup, marker, sleepers, waitFor } from "./fixtures/util.js";

const guard = new Guard({ stderrFormat: "quiet" });
const started: number[] = [];
const dir = mkdtempSync(join(tmpdir(), "leader-run-child-"));

after(async () => {
  const left = cleanup(started);
  await guard.close();
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(left, [], "marked sleep processes were left behind");
});

async function start(options: Partial<StartChildOptions> & { command: string[] }): Promise<ChildHandle> {
  const child = await startChild({
    shell: false,
    env: childEnv(),
    killSignal: "SIGTERM",
    killGraceMs: 3000,
    guard,
    ...options,
  });
  started.push(child.pgid);
  return child;
}

/** States (R, S, Z, …) of every process in the group, zombies included. */
function groupStates(pgid: number): string[] {
  const states: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = parseGroupStat(readFileSync(`/proc/${entry}/stat`, "utf8"));
      if (stat?.pgrp === pgid) states.push(stat.state);
    } catch {
      // exited meanwhile
    }
  }
  return states;
}

function pgrpOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 1).trim().split(/\s+/)[2]);
}

describe("exit status", () => {
  test("passes the child's exit code through", async () => {
    const child = await start({ command: ["sh", "-c", "exit 7"] });
    assert.deepEqual(await child.exited, { code: 7, signal: null, exitCode: 7 });
  });

  test("reports 128+N when the child dies of signal N", async () => {
    const child = await start({ command: ["sh", "-c", "kill -USR2 $$"] });
    assert.deepEqual(await child.exited, { code: null, signal: "SIGUSR2", exitCode: 128 + signalNumber("SIGUSR2") });
  });

  test("gives the child exactly the environment passed in", async () => {
    process.env.LEADER_RUN_TEST_LEAK = "leaked";
    try {
      const child = await start({
        command: ["sh", "-c", '[ "$FOO" = "bar baz" ] && [ -z "$LEADER_RUN_TEST_LEAK" ]'],
        env: { ...childEnv(), FOO: "bar baz" },
      });
      assert.equal((await child.exited).exitCode, 0);
    } finally {
      delete process.env.LEADER_RUN_TEST_LEAK;
    }
  });

  test("the start gate's shell changes nothing in the environment: no PWD or SHLVL added, IFS and the rest as given", async () => {
    const dump = join(dir, "env.json");
    const script = `require("node:fs").writeFileSync(${JSON.stringify(dump)}, JSON.stringify(process.env))`;
    const link = join(dir, "here-link");
    symlinkSync(dir, link);
    const cases: Record<string, string>[] = [
      childEnv(),
      { ...childEnv(), PWD: "/not/where/it/runs", OLDPWD: "/nowhere", SHLVL: "7", IFS: ":", OPTIND: "3", _: "/x", "WEIRD VALUE": "a\nb=c 'd'" },
      { ...childEnv(), PPID: "1", PS1: "$ ", PS4: "++ ", RANDOM: "4", SHELLOPTS: "x", POSIXLY_CORRECT: "" },
      // Where it runs, as given (a symlink, unnormalised): dash keeps such a PWD, and the gate execs
      // the command itself (no env(1) in between).
      { ...childEnv(), PWD: dir, OLDPWD: "/nowhere", SHLVL: "7", _: "/x", LINENO: "3", OPTARG: "y" },
      { ...childEnv(), PWD: `${link}/` },
      { ...childEnv(), PWD: `${dir}/../${basename(dir)}` },
      // Not where it runs, or relative: replaced by dash, so restored through env(1).
      { ...childEnv(), PWD: tmpdir() },
      { ...childEnv(), PWD: "." },
    ];
    for (const env of cases) {
      rmSync(dump, { force: true });
      const child = await start({ command: [process.execPath, "-e", script], env, cwd: dir });
      assert.equal((await child.exited).exitCode, 0);
      assert.deepEqual(JSON.parse(readFileSync(dump, "utf8")), env);
    }
  });

  test("with dash as /bin/sh, the gate execs the command itself when dash would pass the environment on unchanged", async (t) => {
    if (basename(realpathSync("/bin/sh")) !== "dash") return t.skip("/bin/sh is not dash here");
    // The gate's script is in its command line: whether env(1) runs between it and the command.
    const script = async (env: Record<string, string>): Promise<string> => {
      const gate = await prepareGate({ command: ["true"], shell: false, env, killSignal: "SIGTERM", cwd: dir });
      assert.ok(gate !== undefined);
      started.push(gate.pid);
      // Until the fork has exec'd, the command line is still ours.
      let text = "";
      await waitFor("the gate's exec", () => (text = readFileSync(`/proc/${gate.pid}/cmdline`, "utf8")).includes("read -r _lr_gate"));
      await gate.discard();
      return text;
    };
    assert.doesNotMatch(await script(childEnv()), /\/usr\/bin\/env/);
    assert.doesNotMatch(await script({ ...childEnv(), PWD: dir, SHLVL: "2" }), /\/usr\/bin\/env/);
    assert.match(await script({ ...childEnv(), PWD: tmpdir() }), /\/usr\/bin\/env/, "a PWD dash would replace");
    assert.match(await script({ ...childEnv(), IFS: ":" }), /\/usr\/bin\/env/, "an IFS dash would reset");
    assert.match(await script({ ...childEnv(), "a.b": "1" }), /\/usr\/bin\/env/, "a name dash would drop");
  });

  test("as execvp: without PATH the default path is searched, and an empty PATH entry is the working directory", async () => {
    const noPath = await start({ command: ["true"], env: {} });
    assert.equal((await noPath.exited).exitCode, 0);
    const local = join(dir, "local-cmd");
    writeFileSync(local, "#!/bin/sh\nexit 4\n");
    chmodSync(local, 0o755);
    const child = await start({ command: ["local-cmd"], env: { PATH: ":/usr/bin:/bin" }, cwd: dir });
    assert.equal((await child.exited).exitCode, 4);
  });

  test("a command word containing '=' still runs with its arguments", async () => {
    const file = join(dir, "a=b");
    writeFileSync(file, "#!/bin/sh\nexit $1\n");
    chmodSync(file, 0o755);
    const child = await start({ command: [file, "7"] });
    assert.equal((await child.exited).exitCode, 7);
  });

  test("--shell runs the joined words through /bin/sh -c", async () => {
    const child = await start({ command: ["exit", "$((2", "+", "3))"], shell: true });
    assert.equal((await child.exited).exitCode, 5);
  });

  test("--shell reports the shell's 127 for an unknown command instead of failing to spawn", async () => {
    const child = await start({ command: ["no-such-command-leader-run-test", "2>/dev/null"], shell: true });
    assert.equal((await child.exited).exitCode, 127);
  });
});

describe("process group", () => {
  test("the child leads its own process group, separate from ours", async () => {
    const m = marker();
    const child = await start({ command: ["sleep", m] });
    assert.equal(child.pgid, child.pid);
    assert.equal(pgrpOf(child.pid), child.pid);
    assert.notEqual(pgrpOf(process.pid), child.pgid);
    await child.stop("test over");
  });

  test("stop ends the shell and all its grandchildren", async () => {
    const [m1, m2] = [marker(), marker()];
    const events: ChildEvent[] = [];
    const child = await start({ command: ["sleep", m1, "&", "sleep", m2, ";", "wait"], shell: true, log: (e) => events.push(e) });
    await waitFor("both grandchildren", () => sleepers(m1).length === 1 && sleepers(m2).length === 1);
    const result = await child.stop("lost leadership");
    assert.equal(result.groupGone, true);
    assert.equal(result.signalled, true);
    assert.equal(result.escalated, false);
    assert.equal(result.exit?.signal, "SIGTERM");
    assert.equal(result.exit?.exitCode, 143);
    assert.deepEqual(sleepers(m1), []);
    assert.deepEqual(sleepers(m2), []);
    assert.equal(groupHasLiveMembers(child.pgid), false);
    assert.ok(events.some((e) => e.type === "killing" && e.signal === "SIGTERM" && e.reason === "lost leadership"));
    assert.deepEqual(guard.watching().includes(child.pgid), false, "a reaped group is unregistered from the guard");
  });

  test("a group that ignores the kill signal is SIGKILLed after the grace", async () => {
    const m = marker();
    const grace = 800;
    const child = await start({ command: [`trap '' TERM; sleep ${m} & wait`], shell: true, killGraceMs: grace });
    await waitFor("the sleeper", () => sleepers(m).length === 1);
    const t0 = performance.now();
    const result = await child.stop("test");
    const took = performance.now() - t0;
    assert.equal(result.escalated, true);
    assert.equal(result.groupGone, true);
    assert.equal(result.exit?.signal, "SIGKILL");
    assert.equal(result.exit?.exitCode, 137);
    assert.ok(took >= grace * 0.9, `SIGKILL came after ${took} ms, before the ${grace} ms grace`);
    assert.ok(took < grace + 5000, `stop took ${took} ms`);
    assert.deepEqual(sleepers(m), []);
  });

  test("a late stop gets only the grace still safe, down to an immediate SIGKILL", async () => {
    for (const [given, min, max] of [
      [300, 270, 2500],
      [0, 0, 2000],
      [-50, 0, 2000],
    ] as const) {
      const m = marker();
      const child = await start({ command: [`trap '' TERM; sleep ${m} & wait`], shell: true, killGraceMs: 30_000 });
      await waitFor("the sleeper", () => sleepers(m).length === 1);
      const t0 = performance.now();
      const result = await child.stop("late", { graceMs: given });
      const took = performance.now() - t0;
      assert.equal(result.groupGone, true);
      assert.equal(result.exit?.signal, "SIGKILL");
      assert.ok(took >= min && took < max, `graceMs ${given}: SIGKILL after ${Math.round(took)} ms (want ${min}–${max})`);
      assert.deepEqual(sleepers(m), []);
    }
  });

  test("stop after the child exited by itself kills processes it left in its group", async () => {
    const m = marker();
    const events: ChildEvent[] = [];
    const child = await start({ command: [`sleep ${m} & exit 3`], shell: true, log: (e) => events.push(e) });
    assert.equal((await child.exited).exitCode, 3);
    // The shell may exit before its forked child has exec'd sleep; the straggler is in the group either way.
    await waitFor("the straggler's sleep", () => sleepers(m).length === 1);
    assert.ok(events.some((e) => e.type === "stragglers"));
    assert.ok(guard.watching().includes(child.pgid), "the group stays guarded while stragglers live");
    const result = await child.stop("child exited");
    assert.equal(result.signalled, true);
    assert.equal(result.groupGone, true);
    assert.equal(result.exit?.exitCode, 3, "the exit reported is still the leader's own");
    assert.deepEqual(sleepers(m), []);
  });

  test("stop after a clean exit sends nothing and returns at once", async () => {
    const child = await start({ command: ["true"] });
    await child.exited;
    const result = await child.stop("child exited");
    assert.deepEqual(result, { exit: { code: 0, signal: null, exitCode: 0 }, groupGone: true, signalled: false, escalated: false });
    assert.equal(child.signal("SIGTERM"), false, "no signal goes to a group known to be gone");
  });

  test("stop without a first signal waits for the child, then SIGKILLs after the grace", async () => {
    const m = marker();
    const child = await start({ command: ["sleep", m], killGraceMs: 500 });
    const t0 = performance.now();
    const result = await child.stop("forwarded SIGINT", { firstSignal: null });
    assert.ok(performance.now() - t0 >= 450);
    assert.equal(result.escalated, true);
    assert.equal(result.exit?.signal, "SIGKILL");

    const quick = await start({ command: ["sleep", "0.2"], killGraceMs: 10_000 });
    const r2 = await quick.stop("forwarded SIGTERM", { firstSignal: null });
    assert.deepEqual(r2.exit, { code: 0, signal: null, exitCode: 0 });
    assert.equal(r2.escalated, false);
  });

  test("stop is idempotent: concurrent callers share one stop", async () => {
    const child = await start({ command: ["sleep", marker()] });
    const a = child.stop("one");
    const b = child.stop("two");
    assert.equal(a, b);
    assert.equal((await a).groupGone, true);
  });

  test("zombies do not count as live members of the group", async () => {
    const m = marker();
    // The shell forks a short sleep, then becomes a long sleep that never reaps it: a zombie.
    const child = await start({ command: [`sleep 0.1 & exec sleep ${m}`], shell: true });
    await waitFor("the zombie and the long sleep", () => groupStates(child.pgid).includes("Z") && sleepers(m).length === 1);
    // One zombie and one live process; the live sleep is S, or R or D while a loaded machine runs it.
    const states = groupStates(child.pgid);
    assert.equal(states.length, 2, `group states: ${states.join(" ")}`);
    assert.equal(states.filter((s) => s === "Z").length, 1, `group states: ${states.join(" ")}`);
    assert.equal(countLiveMembers(child.pgid), 1);
    await child.stop("test over");
  });
});

describe("spawn errors", () => {
  test("an unknown command is a ChildSpawnError that maps to 127", async () => {
    await assert.rejects(start({ command: ["no-such-command-leader-run-test", "x"] }), (err: unknown) => {
      assert.ok(err instanceof ChildSpawnError);
      assert.equal(err.reason, "not_found");
      assert.equal(err.exitCode, 127);
      assert.equal(err.message, "command not found: no-such-command-leader-run-test: check the spelling and PATH");
      return true;
    });
  });

  test("a file without execute permission maps to 126", async () => {
    const file = join(dir, "noexec.sh");
    writeFileSync(file, "echo hi\n");
    chmodSync(file, 0o644);
    await assert.rejects(start({ command: [file] }), (err: unknown) => {
      assert.ok(err instanceof ChildSpawnError);
      assert.equal(err.reason, "not_executable");
      assert.equal(err.exitCode, 126);
      assert.match(err.message, /^permission denied: .*noexec\.sh is not executable \(chmod \+x\?\)$/);
      return true;
    });
  });

  test("a directory maps to 126", async () => {
    await assert.rejects(start({ command: [dir] }), (err: unknown) => {
      assert.ok(err instanceof ChildSpawnError);
      assert.equal(err.exitCode, 126);
      assert.match(err.message, /is a directory$/);
      return true;
    });
  });

  test("a script whose #! interpreter is missing maps to 126, not 'not found'", async () => {
    const file = join(dir, "badinterp.sh");
    writeFileSync(file, "#!/nonexistent/interpreter\necho hi\n");
    chmodSync(file, 0o755);
    await assert.rejects(start({ command: [file] }), (err: unknown) => {
      assert.ok(err instanceof ChildSpawnError);
      assert.equal(err.reason, "not_executable");
      assert.equal(err.exitCode, 126);
      assert.match(err.message, /^cannot execute .*badinterp\.sh: its #! interpreter "\/nonexistent\/interpreter" was not found$/);
      return true;
    });
  });

  test("a script with Windows line endings gets 126 and a hint, as its '#!/bin/sh\\r' interpreter does not exist", async () => {
    const file = join(dir, "crlf.sh");
    writeFileSync(file, "#!/bin/sh\r\necho hi\r\n");
    chmodSync(file, 0o755);
    await assert.rejects(start({ command: [file] }), (err: unknown) => {
      assert.ok(err instanceof ChildSpawnError);
      assert.equal(err.exitCode, 126);
      assert.match(err.message, /interpreter "\/bin\/sh\\r" was not found \(the script has Windows line endings: convert it with dos2unix\)$/);
      return true;
    });
  });

  test("an empty command word is not found", async () => {
    await assert.rejects(start({ command: [""] }), (err: unknown) => err instanceof ChildSpawnError && err.exitCode === 127);
  });

  test("an unknown kill signal is refused before anything starts", async () => {
    await assert.rejects(start({ command: ["true"], killSignal: "SIGNOPE" as NodeJS.Signals }), RangeError);
  });
});

describe("the last look before the gate opens", () => {
  test("mayStart() false: the command never runs, its gate is killed instead", async () => {
    const touched = join(dir, "may-start-false");
    const child = await start({ command: ["sh", "-c", `touch '${touched}'`], mayStart: () => false });
    const exit = await child.exited;
    assert.equal(exit.signal, "SIGKILL");
    assert.equal(readdirSync(dir).includes("may-start-false"), false, "the command must not have run");
  });

  test("mayStart() true: the command runs as usual", async () => {
    const touched = join(dir, "may-start-true");
    const child = await start({ command: ["sh", "-c", `touch '${touched}'`], mayStart: () => true });
    assert.equal((await child.exited).exitCode, 0);
    assert.equal(readdirSync(dir).includes("may-start-true"), true);
  });
});

describe("a start gate prepared ahead of time", () => {
  const isAlive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return !/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
    } catch {
      return false;
    }
  };

  test("waits without running the command, then is used by the start: same group, the term's variables exported", async () => {
    const touched = join(dir, "prepared-ran");
    const command = ["sh", "-c", `echo "$LEADER_RUN_FENCING_TOKEN" > '${touched}'`];
    const env = childEnv();
    const gate = await prepareGate({ command, shell: false, env, killSignal: "SIGTERM" });
    assert.ok(gate !== undefined);
    started.push(gate.pid);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(isAlive(gate.pid), "the prepared gate waits");
    assert.equal(readdirSync(dir).includes("prepared-ran"), false, "and runs nothing before it is opened");
    const child = await start({ command, env, termEnv: { LEADER_RUN_FENCING_TOKEN: "17" }, prepared: gate });
    assert.equal(child.pgid, gate.pid, "the start used the prepared gate");
    assert.equal((await child.exited).exitCode, 0);
    assert.equal(readFileSync(touched, "utf8"), "17\n");
  });

  test("is discarded, not used, when it was prepared for another command; its command never runs", async () => {
    const touched = join(dir, "prepared-other");
    const gate = await prepareGate({ command: ["sh", "-c", `touch '${touched}'`], shell: false, env: childEnv(), killSignal: "SIGTERM" });
    assert.ok(gate !== undefined);
    started.push(gate.pid);
    const child = await start({ command: ["true"], prepared: gate });
    assert.notEqual(child.pgid, gate.pid);
    assert.equal((await child.exited).exitCode, 0);
    await waitFor("the mismatched gate to be killed", () => !isAlive(gate.pid), 5_000);
    assert.equal(readdirSync(dir).includes("prepared-other"), false, "the mismatched gate's command must not have run");
  });

  test("a prepared gate that died is replaced by a fresh one", async () => {
    const env = childEnv();
    const gate = await prepareGate({ command: ["true"], shell: false, env, killSignal: "SIGTERM" });
    assert.ok(gate !== undefined);
    process.kill(-gate.pid, "SIGKILL");
    await waitFor("the gate to die", () => !isAlive(gate.pid), 5_000);
    const child = await start({ command: ["true"], env, prepared: gate });
    assert.notEqual(child.pgid, gate.pid);
    assert.equal((await child.exited).exitCode, 0);
  });

  test("discard kills it and its command never runs; so does closing its pipe (our death)", async () => {
    const touched = join(dir, "prepared-discarded");
    const gate = await prepareGate({ command: ["sh", "-c", `touch '${touched}'`], shell: false, env: childEnv(), killSignal: "SIGTERM" });
    assert.ok(gate !== undefined);
    await gate.discard();
    assert.equal(isAlive(gate.pid), false);
    assert.equal(readdirSync(dir).includes("prepared-discarded"), false);
  });

  test("mayStart() false with a prepared gate: the command never runs", async () => {
    const touched = join(dir, "prepared-may-not");
    const command = ["sh", "-c", `touch '${touched}'`];
    const env = childEnv();
    const gate = await prepareGate({ command, shell: false, env, killSignal: "SIGTERM" });
    assert.ok(gate !== undefined);
    const child = await start({ command, env, prepared: gate, mayStart: () => false });
    assert.equal(child.pgid, gate.pid);
    assert.equal((await child.exited).signal, "SIGKILL");
    assert.equal(readdirSync(dir).includes("prepared-may-not"), false, "the command must not have run");
  });

  test("a start that fails before using its prepared gate discards it (an idle gate would keep leader-run from exiting)", async () => {
    // The command became unrunnable between preparing and starting (a deploy replacing it, a chmod).
    const script = join(dir, "prepared-then-unrunnable.sh");
    writeFileSync(script, "#!/bin/sh\nexit 0\n");
    chmodSync(script, 0o755);
    const env = childEnv();
    const gate = await prepareGate({ command: [script], shell: false, env, killSignal: "SIGTERM" });
    assert.ok(gate !== undefined);
    started.push(gate.pid);
    chmodSync(script, 0o644);
    await assert.rejects(start({ command: [script], env, prepared: gate }), ChildSpawnError);
    await waitFor("the unused prepared gate to be gone", () => !isAlive(gate.pid), 2_000);
  });

  test("no gate is prepared for a command the pre-check refuses (the start reports it)", async () => {
    assert.equal(await prepareGate({ command: ["/nonexistent/leader-run-x"], shell: false, env: childEnv(), killSignal: "SIGTERM" }), undefined);
  });

  test("termEnv is checked: a name that is not an identifier or a value with a newline is refused before anything starts", async () => {
    await assert.rejects(start({ command: ["true"], termEnv: { "A-B": "1" } }), /not an identifier/);
    await assert.rejects(start({ command: ["true"], termEnv: { A: "1\n2" } }), /newline/);
  });
});
