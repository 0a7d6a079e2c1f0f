import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";

// What a user gets from `npm pack`: the library imports and type-checks from a sibling project.
const root = fileURLToPath(new URL("../..", import.meta.url));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
let work: string;

before(() => {
  assert.ok(existsSync(join(root, "dist", "index.js")), "dist/ is missing: run `npm run build` first (npm test does)");
  work = mkdtempSync(join(tmpdir(), "leader-run-pack-"));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test("the packed tarball installs into a sibling project whose TypeScript imports and runs the library", { timeout: 240_000 }, () => {
  const quiet = { stdio: ["ignore", "pipe", "pipe"] as ["ignore", "pipe", "pipe"], encoding: "utf8" as const };
  // --ignore-scripts: dist/ is already built; prepack would rebuild it under our feet.
  execFileSync(npm, ["pack", "--ignore-scripts", "--pack-destination", work], { ...quiet, cwd: root });
  const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
  assert.ok(tarball, "npm pack produced no tarball");

  const app = join(work, "app");
  execFileSync("mkdir", [app]);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", type: "module", private: true }));
  execFileSync(npm, ["install", "--prefer-offline", "--no-audit", "--no-fund", join(work, tarball)], { ...quiet, cwd: app });

  writeFileSync(
    join(app, "main.ts"),
    `import { LeaderElector, runOrDie, newLeaderHealthzAdaptor, MemoryLock, MemoryStore, type ElectionConfig } from "leader-run";
const store = new MemoryStore();
const healthz = newLeaderHealthzAdaptor(20_000);
let led = false;
const controller = new AbortController();
const config: ElectionConfig = {
  lock: new MemoryLock(store, "app-1"),
  leaseDuration: 15_000,
  renewDeadline: 10_000,
  retryPeriod: 2_000,
  releaseOnCancel: true,
  name: "app",
  watchDog: healthz,
  callbacks: {
    onStartedLeading: (signal: AbortSignal) => { led = true; controller.abort(); void signal; },
    onStoppedLeading: () => undefined,
  },
};
await runOrDie(controller.signal, config);
const elector: LeaderElector = new LeaderElector(config);
console.log(JSON.stringify({ led, healthz: healthz.name(), leader: elector.getLeader() }));
`,
  );
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify({ compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, outDir: "out", types: [], lib: ["ES2023", "DOM"] }, files: ["main.ts"] }),
  );
  // Type-check against the installed package's declarations (this project's compiler), then run it.
  try {
    execFileSync(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", app], { ...quiet, cwd: app });
  } catch (error) {
    assert.fail(`the sibling project does not type-check:\n${String((error as { stdout?: string }).stdout)}`);
  }
  const out = execFileSync(process.execPath, [join(app, "out", "main.js")], { ...quiet, cwd: app });
  assert.deepEqual(JSON.parse(out.trim()), { led: true, healthz: "leaderElection", leader: "" });
  // The CLI ships too.
  const help = execFileSync(process.execPath, [join(app, "node_modules", "leader-run", "bin", "leader-run.js"), "--help"], { ...quiet, cwd: app });
  assert.match(help, /leader-run \[options\] -- <command>/);
});
