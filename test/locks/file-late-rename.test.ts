/**
 * A rename of the lease file that its writer abandoned (the file system did not answer within the
 * bound) but that the kernel completes later, after another process broke the critical section and
 * wrote its own record: the late record must count for nobody. Reproduced for real: strace delays the
 * writer's rename() by seconds (found by review, 2026-12-02; docs/safety.md).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import { FileLock } from "../../src/locks/file/index.js";
import { Processes, tempDir, waitFor } from "./file-helpers.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const procs = new Processes();
let root: { dir: string; cleanup: () => Promise<void> };

before(async () => {
  root = await tempDir("leader-run-late-");
});

after(async () => {
  await procs.killAll();
  await root.cleanup();
});

function haveStrace(): boolean {
  return spawnSync("strace", ["-V"], { stdio: "ignore" }).status === 0;
}

/** Lines the worker prints, in order, awaited one at a time. */
function lines(child: ChildProcess): (prefix: string, timeoutMs: number) => Promise<string> {
  const seen: string[] = [];
  let buffer = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    buffer += chunk;
    let i;
    while ((i = buffer.indexOf("\n")) >= 0) {
      seen.push(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
    }
  });
  return async (prefix, timeoutMs) => {
    let found: string | undefined;
    await waitFor(() => (found = seen.find((l) => l.startsWith(prefix))) !== undefined, timeoutMs, `worker line "${prefix}…" (seen: ${JSON.stringify(seen)})`);
    return found!;
  };
}

test("a rename abandoned at its bound that lands after another process wrote counts for nobody", async (t) => {
  if (!haveStrace()) {
    if (process.env.CI === "true") assert.fail("strace is not installed (CI=true): apt-get install -y strace");
    return t.skip("strace is not installed: cannot delay a rename for real");
  }
  const dir = join(root.dir, "lease");
  const config = { name: "job", dir, fsTimeoutMs: 1_000, staleMs: 1_000 };
  const run = (role: "slow" | "breaker", identity: string, fault: string): ChildProcess =>
    procs.track(
      spawn(
        "strace",
        [
          "-f", "-qq", "-o", "/dev/null", "-e", `trace=${fault.split(":")[0]}`, "-e", `inject=${fault}`,
          process.execPath, "--import", "tsx", join(here, "file-late-rename-worker.ts"), JSON.stringify({ ...config, role, identity }),
        ],
        { cwd: repo, stdio: ["pipe", "pipe", "inherit"] },
      ),
    );
  // Every rename() of the slow writer is delayed by 5 s: the lease file's is the only one it makes (the
  // critical section is taken with link()).
  const slow = run("slow", "slow", "rename,renameat,renameat2:delay_enter=5000000");
  const fromSlow = lines(slow);
  await fromSlow("ready", 30_000);

  slow.stdin!.write("go\n");
  const abandoned = await fromSlow("abandoned", 10_000);
  assert.match(abandoned, /did not answer within 1s/);

  // Another process takes the lease meanwhile: it breaks the slow writer's critical section by age (its
  // rename's bound, 1 s, plus the check window) and writes its own record. Its clean-up of temp files
  // would remove the slow writer's and so defuse the late rename (ENOENT); here that unlink fails, as on
  // a misbehaving file system, to show what stands behind it.
  const breaker = run("breaker", "other", "unlink,unlinkat:error=EIO");
  await lines(breaker)("wrote", 30_000);
  const other = new FileLock({ name: "job", identity: "observer", dir, leaseDurationMs: 60_000 });
  assert.equal((await other.get()).record.holderIdentity, "other");

  // The abandoned rename lands over it.
  await waitFor(async () => (JSON.parse(await readFile(join(dir, "job"), "utf8")) as { holderIdentity: string }).holderIdentity === "slow", 15_000, "the delayed rename to land");
  assert.equal((await other.get()).record.holderIdentity, "slow", "the breaker would see a foreign holder (and stop leading)");

  // Its writer must not take it as its own renewal (before the fix it did: it went on to write, and its
  // next rename hung in turn)... (The breaker could not remove its critical-section
  // lock file either, and the slow writer, every rename of which is delayed, would take
  // 5 s to break it: remove it.)
  await rm(join(dir, ".job~lock"), { force: true });
  slow.stdin!.write("check\n");
  const verdict = await fromSlow("refused", 10_000).catch(async () => fromSlow("accepted", 1));
  assert.match(verdict, /^refused SameIdentityHeldError: .*landed .* after its deadline/, verdict);

  // ...and once the writer is gone, a standby on this host must not take it over at once as a dead
  // holder's lease: the record it replaced named a leader whose work may still be stopping.
  await procs.kill(slow);
  const standby = new FileLock({ name: "job", identity: "standby", dir, leaseDurationMs: 60_000 });
  const { record: seen } = await standby.get();
  assert.equal(seen.holderIdentity, "slow", "held until it expires, not free because its writer died");
});
