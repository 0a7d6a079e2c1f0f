import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = fileURLToPath(new URL("./fixtures/cli.ts", import.meta.url));

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of Object.keys(e)) if (k.startsWith("LEADER_RUN_")) delete e[k];
  return e;
}

function statusLocation(extra: Record<string, string>, unset: string[]): string {
  const e = env(extra);
  for (const k of unset) delete e[k];
  const name = `default-dir-${process.pid}`;
  const r = spawnSync(process.execPath, ["--import", "tsx", CLI, "status", "--name", name], { cwd: ROOT, encoding: "utf8", env: e, timeout: 30_000 });
  assert.equal(r.status, 3, r.stderr);
  const line = r.stdout.split("\n").find((l) => l.startsWith("location:"));
  assert.ok(line, r.stdout);
  return line.slice("location:".length).trim();
}

describe("the default file-lock directory", () => {
  const home = mkdtempSync(join(tmpdir(), "leader-run-xdg-"));
  after(() => rmSync(home, { recursive: true, force: true }));

  it("is the same for a cron job (no XDG_RUNTIME_DIR, no TMPDIR) and a login shell, and status prints it", () => {
    const expected = `/tmp/leader-run-${process.getuid?.()}/default-dir-${process.pid}`;
    const fromCron = statusLocation({}, ["XDG_RUNTIME_DIR", "TMPDIR"]);
    const fromShell = statusLocation({ XDG_RUNTIME_DIR: home, TMPDIR: home }, []);
    assert.equal(fromCron, expected);
    assert.equal(fromShell, expected);
  });
});
