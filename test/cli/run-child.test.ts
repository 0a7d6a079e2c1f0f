/**
 * ChildControl's prepared start gate and the guard around an acquiring write (`prearm` / `disarm`):
 * the guard watches the prepared gate only while an acquiring write is in flight, and never a gate
 * that exited (its pid may belong to somebody else by then).
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChildControl } from "../../src/cli/run-child.js";
import { createLogger } from "../../src/cli/log.js";
import { parseCommandLine, type RunOptions } from "../../src/cli/options.js";
import type { Guard } from "../../src/child/guard.js";
import type { PreparedGate } from "../../src/child/supervisor.js";
import { waitFor } from "../child/fixtures/util.js";

const dir = mkdtempSync(join(tmpdir(), "leader-run-run-child-"));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Inside {
  prepared: PreparedGate | undefined;
  guard: Guard;
}

async function control(): Promise<{ cc: ChildControl; inside: () => Inside }> {
  const parsed = await parseCommandLine(["--lock", `file:${dir}`, "--name", "job", "--", "sleep", "1000"], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, cwd: dir });
  assert.equal(parsed.command, "run");
  const options = (parsed as { options: RunOptions }).options;
  const cc = new ChildControl(options, createLogger({ level: "error", sink: { write: () => true } }), undefined, undefined, () => import("../../src/child/supervisor.js"), {
    term: () => 1,
    stopDeadline: () => undefined,
    cancel: () => undefined,
  });
  return { cc, inside: () => cc as unknown as Inside };
}

async function prepared(cc: ChildControl, inside: () => Inside): Promise<PreparedGate> {
  cc.prepare();
  await waitFor("the prepared gate", () => inside().prepared !== undefined && inside().guard.pid !== undefined);
  const gate = inside().prepared;
  assert.ok(gate !== undefined);
  return gate;
}

describe("ChildControl: the guard and the prepared gate around an acquiring write", () => {
  test("prearm asks the guard to watch the prepared gate; disarm (the write failed) takes it off again", async () => {
    const { cc, inside } = await control();
    try {
      const gate = await prepared(cc, inside);
      cc.prearm(performance.now());
      await waitFor("the guard to watch the gate", () => inside().guard.watching().includes(gate.pid));
      cc.disarm();
      assert.deepEqual(inside().guard.watching(), []);
      assert.equal(gate.waiting, true, "the gate itself stays prepared for the next attempt");
    } finally {
      await cc.close();
    }
  });

  test("a prepared gate that exited is forgotten and taken off the guard, and never prearmed again", async () => {
    const { cc, inside } = await control();
    try {
      const gate = await prepared(cc, inside);
      cc.prearm(performance.now());
      await waitFor("the guard to watch the gate", () => inside().guard.watching().includes(gate.pid));
      // Killed (the guard at an earlier attempt's deadline, or anyone): its pid is free for reuse.
      process.kill(-gate.pid, "SIGKILL");
      await gate.exited;
      await waitFor("the gate to be forgotten", () => inside().prepared !== gate);
      assert.deepEqual(inside().guard.watching(), [], "the dead gate's pid is no longer watched");
      cc.prearm(performance.now());
      assert.deepEqual(inside().guard.watching(), [], "nothing is prearmed without a live gate");
      // The next wait prepares a fresh gate.
      const fresh = await prepared(cc, inside);
      assert.notEqual(fresh.pid, gate.pid);
      assert.equal(fresh.waiting, true);
    } finally {
      await cc.close();
    }
  });

  test("close takes a prearmed gate off the guard before it goes", async () => {
    const { cc, inside } = await control();
    const gate = await prepared(cc, inside);
    cc.prearm(performance.now());
    await waitFor("the guard to watch the gate", () => inside().guard.watching().includes(gate.pid));
    await cc.close();
    assert.deepEqual(inside().guard.watching(), []);
    assert.equal(gate.waiting, false);
  });
});
