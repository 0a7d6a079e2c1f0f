import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const BIN = join(ROOT, "bin", "leader-run.js");
const LOADED = fileURLToPath(new URL("./fixtures/loaded-modules.ts", import.meta.url));

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith("LEADER_RUN_")) delete env[k];
  return env;
}

describe("bin/leader-run.js", () => {
  const tmp = mkdtempSync(join(tmpdir(), "leader-run-bin-"));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it("tells to run `npm run build` when dist/ is missing", () => {
    mkdirSync(join(tmp, "bin"));
    copyFileSync(BIN, join(tmp, "bin", "leader-run.js"));
    const r = spawnSync(process.execPath, [join(tmp, "bin", "leader-run.js"), "--version"], { encoding: "utf8", env: childEnv(), timeout: 30_000 });
    assert.equal(r.status, 70);
    assert.equal(r.stderr, "leader-run: not built yet (dist/bin/main.js is missing); run `npm run build` first\n");
  });

  it("runs the built CLI and sets the exit code (skipped until `npm run build`)", (t) => {
    if (!existsSync(join(ROOT, "dist", "bin", "main.js"))) {
      t.skip("dist/ not built: npm run build");
      return;
    }
    const v = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8", env: childEnv(), timeout: 30_000 });
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^\d+\.\d+\.\d+/);
    const bad = spawnSync(process.execPath, [BIN, "--lease-duration", "1x", "--", "true"], { encoding: "utf8", env: childEnv(), timeout: 30_000 });
    assert.equal(bad.status, 64);
    assert.match(bad.stderr, /^leader-run: --lease-duration: "1x" is not a duration/);
  });
});

describe("start-up cost", () => {
  it("the file lock never loads ioredis, the Kubernetes client, etcd3 (gRPC) or prom-client", () => {
    const dir = mkdtempSync(join(tmpdir(), "leader-run-load-"));
    try {
      const r = spawnSync(process.execPath, ["--import", "tsx", LOADED, "status", "--lock", `file:${dir}`, "--name", "x"], {
        cwd: ROOT,
        encoding: "utf8",
        env: childEnv(),
        timeout: 30_000,
      });
      assert.equal(r.status, 0, r.stderr);
      const last = r.stdout.trim().split("\n").pop() ?? "";
      assert.deepEqual(JSON.parse(last), { code: 3, heavy: [] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("(control) a redis lock does load ioredis, so the check above can see it", () => {
    const r = spawnSync(process.execPath, ["--import", "tsx", LOADED, "status", "--lock", "redis://127.0.0.1:1", "--name", "x", "--output", "json"], {
      cwd: ROOT,
      encoding: "utf8",
      env: childEnv(),
      timeout: 60_000,
    });
    const last = r.stdout.trim().split("\n").pop() ?? "";
    const parsed = JSON.parse(last) as { code: number; heavy: string[] };
    assert.ok(parsed.heavy.includes("ioredis"), last);
    assert.equal(parsed.code, 69, r.stderr);
  });
});
