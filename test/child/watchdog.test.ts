import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { startChild } from "../../src/child/supervisor.js";
import { Watchdog } from "../../src/child/watchdog.js";
import { groupHasLiveMembers } from "../../src/child/process-group.js";
import type { ChildEvent } from "../../src/child/events.js";
import { childEnv, cleanup, isRunning, marker, sleepers, waitFor } from "./fixtures/util.js";

const FIXTURE = fileURLToPath(new URL("./fixtures/supervise.ts", import.meta.url));
const pgids: number[] = [];
const pids: number[] = [];

after(() => {
  assert.deepEqual(cleanup(pgids, pids), [], "marked sleep processes were left behind");
});

interface Supervisor {
  proc: ChildProcess;
  info: { pid: number; childPid: number; pgid: number; watchdogPid: number };
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
  pids.push(info.watchdogPid);
  return { proc, info, stderr: () => err, closed };
}

/**
 * Waits for the watchdog's report on the shared stderr pipe. The report is written after the signal is
 * sent, so the group can be seen dead (and the watchdog gone) before the line reaches this process.
 */
async function reported(sup: Supervisor, line: RegExp): Promise<void> {
  try {
    await waitFor(`the watchdog to report ${line}`, () => line.test(sup.stderr()), 5000);
  } catch {
    assert.match(sup.stderr(), line);
  }
}

/** Whether the process has a handler for signal `n` (SigCgt in /proc/<pid>/status). */
function catches(pid: number, n: number): boolean {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").match(/^SigCgt:\s*([0-9a-f]+)$/m);
    return line?.[1] !== undefined && (BigInt(`0x${line[1]}`) & (1n << BigInt(n - 1))) !== 0n;
  } catch {
    return false;
  }
}

describe("orphan protection", () => {
  test("SIGKILL of the supervising process stops the child's whole group within a few seconds", async () => {
    const [m1, m2] = [marker(), marker()];
    const sup = await supervise({ command: [`sleep ${m1} & sleep ${m2}; wait`], shell: true, killGraceMs: 1000 });
    assert.ok(sup.info.watchdogPid > 0, "the watchdog runs alongside the child");
    await waitFor("both grandchildren", () => sleepers(m1).length === 1 && sleepers(m2).length === 1);

    sup.proc.kill("SIGKILL");
    const took = await waitFor(
      "the group to be stopped",
      () => !groupHasLiveMembers(sup.info.pgid) && sleepers(m1).length === 0 && sleepers(m2).length === 0,
      8000,
    );
    assert.ok(took < 5000, `group stopped ${Math.round(took)} ms after the supervisor died`);
    await waitFor("the watchdog to exit", () => !isRunning(sup.info.watchdogPid), 5000);
    await reported(sup, new RegExp(`sent SIGTERM to process group ${sup.info.pgid}`));
  });

  test("after the supervisor dies, a group that ignores the kill signal is SIGKILLed after the grace", async () => {
    const m = marker();
    const grace = 1500;
    const sup = await supervise({ command: [`trap '' TERM; sleep ${m} & wait`], shell: true, killGraceMs: grace });
    await waitFor("the sleeper", () => sleepers(m).length === 1);

    sup.proc.kill("SIGKILL");
    const took = await waitFor("the group to be killed", () => !groupHasLiveMembers(sup.info.pgid), grace + 8000);
    assert.ok(took >= grace * 0.8, `group died ${Math.round(took)} ms after the supervisor, before the ${grace} ms grace`);
    assert.ok(took < grace + 5000, `group died only ${Math.round(took)} ms after the supervisor`);
    await waitFor("the watchdog to exit", () => !isRunning(sup.info.watchdogPid), 5000);
    await reported(sup, new RegExp(`sent SIGKILL to process group ${sup.info.pgid}`));
  });

  test("the watchdog never keeps the supervisor alive and exits when it exits", async () => {
    const sup = await supervise({ command: ["sleep", "0.1"], shell: false, killGraceMs: 1000, mode: "finish" });
    const code = await new Promise<number | null>((resolve) => {
      if (sup.proc.exitCode !== null) resolve(sup.proc.exitCode);
      else sup.proc.once("exit", (c) => resolve(c));
    });
    assert.equal(code, 0);
    await waitFor("the watchdog to exit", () => !isRunning(sup.info.watchdogPid), 5000);
    // At 'exit' a report may still be in the pipe (the watchdog writes to the same one): only 'close',
    // once both are gone, says all of stderr is in.
    await sup.closed;
    assert.equal(sup.stderr(), "", "nothing was killed");
  });
});

describe("watchdog lifecycle", () => {
  test("a killed watchdog is restarted and guards the running child again", async () => {
    const events: ChildEvent[] = [];
    const watchdog = new Watchdog({ stderrFormat: "quiet", log: (e) => events.push(e) });
    const m = marker();
    const child = await startChild({ command: ["sleep", m], shell: false, env: childEnv(), killSignal: "SIGTERM", killGraceMs: 2000, watchdog });
    pgids.push(child.pgid);
    const first = watchdog.pid;
    assert.ok(first !== undefined);
    pids.push(first);
    process.kill(first, "SIGKILL");
    await waitFor("a new watchdog", () => watchdog.pid !== undefined && watchdog.pid !== first, 5000);
    pids.push(watchdog.pid ?? 0);
    assert.ok(events.some((e) => e.type === "watchdog_exited" && e.signal === "SIGKILL"));

    // Closing the pipe looks to the watchdog exactly like our death: it must stop the child.
    await watchdog.close();
    const exit = await child.exited;
    assert.equal(exit.signal, "SIGTERM");
    assert.deepEqual(sleepers(m), []);
  });

  test("the watchdog ignores the stop signals meant for leader-run", async () => {
    const watchdog = new Watchdog({ stderrFormat: "quiet" });
    watchdog.start();
    const pid = watchdog.pid;
    assert.ok(pid !== undefined);
    pids.push(pid);
    await waitFor("the watchdog's handlers", () => catches(pid, 15) && catches(pid, 2) && catches(pid, 1), 5000);
    for (const sig of ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"] as const) process.kill(pid, sig);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(isRunning(pid), "the watchdog survived");
    await watchdog.close();
    assert.equal(isRunning(pid), false);
  });
});
