import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, afterEach, beforeEach, describe, test, type TestContext } from "node:test";
import { execFileSync } from "node:child_process";
import { BIN, E2E, LeaderRunProcess, ROOT, TIMING, leftovers, marker, sleepers, waitFor } from "./support.js";

/**
 * Issue #14: every file-system call of the file lock is bounded in time. A real file system that never
 * answers: test/support/hung-fs.sh mounts a FUSE file system nobody serves (every call that reaches
 * it blocks, like NFS whose server is gone) in a private mount namespace, on the lock directory, the
 * lease file or the critical section's lock file. Where the file lock can be made to block without
 * root: a FIFO where the critical section's lock file belongs (open() for reading blocks on a FIFO).
 *
 * Calls that no test here makes hang: the temp file's create/write/fsync/rename/link and the
 * directory's fsync and readdir (they use fresh names or paths that already answered; a FUSE mount
 * that hangs only for some calls needs a FUSE daemon, which this machine does not have). They go
 * through the same bound (src/locks/file/bounded.ts).
 */

const HUNG_FS = join(ROOT, "test", "support", "hung-fs.sh");

/** Mounting needs root, /dev/fuse and unshare; probed once by mounting for real. */
function fuseProblem(): string | undefined {
  if (process.getuid?.() !== 0) return "not root";
  if (!existsSync("/dev/fuse")) return "no /dev/fuse";
  // On a directory of its own: nothing else (a PATH entry, the working directory) is below it.
  const dir = mkdtempSync(join(tmpdir(), "hung-fs-probe-"));
  const r = spawnSync("unshare", ["-m", "--propagation", "private", "sh", HUNG_FS, dir, "true"], { encoding: "utf8", timeout: 10_000 });
  rmSync(dir, { recursive: true, force: true });
  if (r.error) return `unshare: ${r.error.message}`;
  if (r.status !== 0) return `mounting a FUSE file system failed (exit ${r.status}): ${r.stderr.trim()}`;
  return undefined;
}
const FUSE_PROBLEM = fuseProblem();

function requireFuse(t: TestContext): boolean {
  if (FUSE_PROBLEM === undefined) return true;
  const message = `a hung FUSE mount cannot be made here (${FUSE_PROBLEM}); run as root with /dev/fuse`;
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return false;
}

let h: E2E;
const procs: LeaderRunProcess[] = [];
beforeEach(async () => {
  h = await E2E.create();
});
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.running) {
      p.signal("SIGKILL");
      await p.exit(10_000).catch(() => undefined);
    }
  }
  assert.deepEqual(await h.cleanup(), [], "the test left processes behind");
});
after(() => {
  assert.deepEqual(leftovers(), [], "processes left behind");
});

/** leader-run in a private mount namespace where `mountpoint` hangs. */
function onHungMount(label: string, mountpoint: string, args: readonly string[]): LeaderRunProcess {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith("LEADER_RUN_")) delete env[key];
  const child = spawn("unshare", ["-m", "--propagation", "private", "sh", HUNG_FS, mountpoint, process.execPath, BIN, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env,
    cwd: h.work,
  });
  const p = new LeaderRunProcess(label, child);
  procs.push(p);
  return p;
}

const lines = (text: string): string[] => text.split("\n").filter((l) => l !== "");
const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/~]/g, "\\$&");

describe("a file system that never answers", () => {
  test("a lock directory on it: run, status, release and step-down exit 69 with one line naming the path", async (t) => {
    if (!requireFuse(t)) return;
    const mnt = join(h.work, "mnt");
    await mkdir(mnt);
    const dir = join(mnt, "locks");
    const target = ["--lock", `file:${dir}`, "--name", h.name];
    const run = onHungMount("run", mnt, [...target, "--quiet", ...TIMING, "--", "true"]);
    // The one-shot commands bound each call by the default renew deadline (10s).
    const oneShots = [["status"], ["release", "--force"], ["step-down"]].map(([c, ...more]) => onHungMount(c ?? "", mnt, [c ?? "", ...target, ...more]));
    // Generous for a loaded machine: the point is that it ends by itself at all (it used to hang).
    assert.equal(await run.exitCode(45_000), 69, `${run}`);
    assert.equal(lines(run.stderr).length, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`${escape(dir)}: the file system did not answer within 2s`));
    for (const p of oneShots) {
      assert.equal(await p.exitCode(45_000), 69, `${p}`);
      assert.equal(lines(p.stderr).length, 1, p.stderr);
      assert.match(p.stderr, new RegExp(`^leader-run: ${escape(dir)}: the file system did not answer within 10s`), p.label);
    }
  });

  test("the lease file or the critical section's lock file on it: exit 69 naming that file", async (t) => {
    if (!requireFuse(t)) return;
    for (const file of [h.name, `.${h.name}~lock`]) {
      const path = join(h.lockDir, file);
      await writeFile(path, "", { mode: 0o600 });
      const run = onHungMount(file, path, ["--lock", h.lockUrl, "--name", h.name, "--quiet", ...TIMING, "--", "true"]);
      assert.equal(await run.exitCode(45_000), 69, `${run}`);
      assert.equal(lines(run.stderr).length, 1, run.stderr);
      assert.match(run.stderr, new RegExp(`${escape(path)}: the file system did not answer within 2s`));
    }
  });

  test("the first SIGINT ends a leader-run whose first call hangs", async (t) => {
    if (!requireFuse(t)) return;
    const mnt = join(h.work, "mnt");
    await mkdir(mnt);
    const slow = ["--lease-duration", "40s", "--renew-deadline", "30s", "--retry-period", "1s"];
    const run = onHungMount("run", mnt, ["--lock", `file:${join(mnt, "locks")}`, "--name", h.name, "--log-format", "json", ...slow, "--", "true"]);
    await run.waitForLog("campaigning");
    const sent = performance.now();
    run.signal("SIGINT");
    assert.equal(await run.exitCode(20_000), 130, `${run}`);
    // Its calls are bounded by 30s: ending well before that is ending on the signal.
    assert.ok(performance.now() - sent < 10_000, `took ${Math.round(performance.now() - sent)} ms to stop`);
  });

  test("a leader whose directory hangs mid-term stops its child by the renew deadline and ends instead of hanging", async (t) => {
    if (!requireFuse(t)) return;
    const m = marker();
    const env = { ...process.env };
    for (const key of Object.keys(env)) if (key.startsWith("LEADER_RUN_")) delete env[key];
    const child = spawn("unshare", ["-m", "--propagation", "private", process.execPath, BIN, "--lock", h.lockUrl, "--name", h.name, "--identity", "e2e-a", "--log-format", "json", ...TIMING, "--", ...h.child("e2e-a", m)], {
      stdio: ["ignore", "pipe", "pipe"],
      env,
      cwd: h.work,
    });
    const leader = new LeaderRunProcess("e2e-a", child);
    procs.push(leader);
    await h.waitForChildEvent("the child to start", (e) => e.kind === "start");
    const mount = spawn("nsenter", [`--mount=/proc/${leader.pid}/ns/mnt`, "sh", HUNG_FS, h.lockDir, "--while", String(leader.pid)], { stdio: ["ignore", "pipe", "pipe"] });
    let mounted = "";
    mount.stdout.setEncoding("utf8").on("data", (s: string) => (mounted += s));
    await waitFor("the mount", () => mounted.includes("mounted") || mount.exitCode !== null, 10_000);
    assert.equal(mount.exitCode, null, "mounting over the lock directory failed");
    const hungAt = performance.now();
    const lost = await leader.waitForLog("lost", 10_000);
    assert.equal(lost.reason, "deadline");
    await h.waitForChildEvent("the child to be stopped", (e) => e.kind === "stop", 10_000);
    await waitFor("the child's sleep to end", () => sleepers(m).length === 0, 10_000);
    const end = await leader.exit(20_000);
    // A thread-pool thread stuck in the mount keeps a process from exiting normally: leader-run says
    // so and ends by SIGKILL (see src/cli/exit.ts) instead of hanging with the lease left to expire.
    assert.deepEqual(end, { code: null, signal: "SIGKILL" }, `${leader}`);
    const blocked = leader.logs().find((l) => l.event === "exit_blocked");
    assert.ok(blocked, leader.stderr);
    assert.equal(blocked.exit_code, 76);
    assert.ok(performance.now() - hungAt < 30_000, "the leader took far longer than its deadlines to end");
    await waitFor("the mount helper to end", () => mount.exitCode !== null, 5000);
  });
});

describe("a FIFO where the critical section's lock file belongs", () => {
  test("is cleared away instead of blocking open() for good", async () => {
    execFileSync("mkfifo", ["-m", "600", join(h.lockDir, `.${h.name}~lock`)]);
    const run = h.spawn("run", ["--lock", h.lockUrl, "--name", h.name, "--quiet", ...TIMING, "--", "true"]);
    assert.equal(await run.exitCode(15_000), 0, `${run}`);
    assert.equal(run.stderr, "");
    assert.equal(existsSync(join(h.lockDir, `.${h.name}~lock`)), false);
  });
});
