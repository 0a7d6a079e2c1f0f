import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startChild, type ChildHandle } from "../../src/child/supervisor.js";
import { forwardSignals, FORWARDED_SIGNALS } from "../../src/child/signals.js";
import { Guard } from "../../src/child/guard.js";
import { childEnv, cleanup, waitFor } from "./fixtures/util.js";

// Signals are sent to this test process itself, with forwardSignals' handlers installed; they never
// reach the test runner.

const guard = new Guard({ stderrFormat: "quiet" });
const pgids: number[] = [];
const dir = mkdtempSync(join(tmpdir(), "leader-run-signals-"));

after(async () => {
  const left = cleanup(pgids);
  await guard.close();
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(left, []);
});

/** A shell child that records the first trapped signal in a file and exits 0. */
async function trapping(name: string, signal: string): Promise<{ child: ChildHandle; out: string }> {
  const out = join(dir, `${name}.out`);
  const ready = join(dir, `${name}.ready`);
  const child = await startChild({
    command: [`trap 'echo ${signal} > "$OUT"; exit 0' ${signal}; : > "$READY"; while :; do sleep 0.05; done`],
    shell: true,
    env: { ...childEnv(), OUT: out, READY: ready },
    killSignal: "SIGTERM",
    killGraceMs: 2000,
    guard,
  });
  pgids.push(child.pgid);
  await waitFor("the child's trap", () => existsSync(ready));
  return { child, out };
}

describe("forwardSignals", () => {
  test("SIGUSR1 reaches the child's group and does not request a stop", async () => {
    const { child, out } = await trapping("usr1", "USR1");
    const stops: string[] = [];
    const dispose = forwardSignals(child, (sig) => stops.push(sig));
    try {
      process.kill(process.pid, "SIGUSR1");
      const exit = await child.exited;
      assert.equal(exit.exitCode, 0);
      assert.equal(readFileSync(out, "utf8").trim(), "USR1");
      assert.deepEqual(stops, []);
    } finally {
      dispose();
      await child.stop("test over");
    }
  });

  test("SIGTERM is forwarded to the child and requests a stop", async () => {
    const { child, out } = await trapping("term", "TERM");
    const stops: string[] = [];
    const dispose = forwardSignals(child, (sig) => {
      stops.push(sig);
      void child.stop(`received ${sig}`, { firstSignal: null });
    });
    try {
      process.kill(process.pid, "SIGTERM");
      const result = await child.stop("awaited");
      assert.equal(readFileSync(out, "utf8").trim(), "TERM");
      assert.deepEqual(stops, ["SIGTERM"]);
      assert.deepEqual(result.exit, { code: 0, signal: null, exitCode: 0 });
      assert.equal(result.escalated, false);
    } finally {
      dispose();
    }
  });

  test("SIGINT, SIGHUP and SIGQUIT request a stop; SIGUSR2 is only forwarded", async () => {
    const forwarded: string[] = [];
    const stops: string[] = [];
    const dispose = forwardSignals({ signal: (sig) => (forwarded.push(sig), true) }, (sig) => stops.push(sig));
    try {
      for (const sig of ["SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR2"] as const) process.kill(process.pid, sig);
      await waitFor("all four signals", () => forwarded.length === 4, 5000);
      assert.deepEqual(forwarded.sort(), ["SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR2"]);
      assert.deepEqual(stops.sort(), ["SIGHUP", "SIGINT", "SIGQUIT"]);
    } finally {
      dispose();
    }
  });

  test("the disposer removes every handler it installed", () => {
    const before = FORWARDED_SIGNALS.map((sig) => process.listenerCount(sig));
    const dispose = forwardSignals({ signal: () => true }, () => {});
    assert.deepEqual(
      FORWARDED_SIGNALS.map((sig) => process.listenerCount(sig)),
      before.map((n) => n + 1),
    );
    dispose();
    dispose();
    assert.deepEqual(
      FORWARDED_SIGNALS.map((sig) => process.listenerCount(sig)),
      before,
    );
  });
});
