/**
 * ChildControl's start gate prepared while a standby waits: one that exits unused is forgotten, so the
 * next wait prepares a fresh one (instead of the start finding it dead).
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ChildControl } from "../../src/cli/run-child.js";
import { createLogger } from "../../src/cli/log.js";
import { parseCommandLine, type RunOptions } from "../../src/cli/options.js";
import type { PreparedGate } from "../../src/child/supervisor.js";
import { waitFor } from "../child/fixtures/util.js";

const dir = mkdtempSync(join(tmpdir(), "leader-run-run-child-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("ChildControl: the prepared start gate", () => {
  test("a prepared gate that exited unused is forgotten, and the next wait prepares a fresh one", async () => {
    const parsed = await parseCommandLine(["--lock", `file:${dir}`, "--name", "job", "--", "sleep", "1000"], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }, cwd: dir });
    assert.equal(parsed.command, "run");
    const options = (parsed as { options: RunOptions }).options;
    const cc = new ChildControl(options, createLogger({ level: "error", sink: { write: () => true } }), undefined, undefined, () => import("../../src/child/supervisor.js"), {
      term: () => 1,
      stopDeadline: () => undefined,
      cancel: () => undefined,
    });
    const inside = (): { prepared: PreparedGate | undefined } => cc as unknown as { prepared: PreparedGate | undefined };
    try {
      cc.prepare();
      await waitFor("the prepared gate", () => inside().prepared !== undefined);
      const gate = inside().prepared;
      assert.ok(gate !== undefined && gate.waiting);
      process.kill(-gate.pid, "SIGKILL");
      await gate.exited;
      await waitFor("the dead gate to be forgotten", () => inside().prepared !== gate);
      assert.equal(gate.waiting, false);
      cc.prepare();
      await waitFor("a fresh gate", () => inside().prepared !== undefined);
      assert.notEqual(inside().prepared?.pid, gate.pid);
      assert.equal(inside().prepared?.waiting, true);
    } finally {
      await cc.close();
    }
  });
});
