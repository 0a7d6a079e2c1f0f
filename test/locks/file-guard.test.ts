import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { LeaderElector } from "../../src/election/elector.js";
import { currentProcess } from "../../src/locks/file/process.js";
import { FileLock } from "../../src/locks/file/index.js";
import { Processes, tempDir, waitFor } from "./file-helpers.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const guardWorker = join(here, "file-guard-worker.ts");
const electorWorker = join(here, "file-elector-worker.ts");

const procs = new Processes();
/** Process groups the workers left behind (their sleeps); killed in `after` whatever happens. */
const groups = new Set<number>();
let root: { dir: string; cleanup: () => Promise<void> };
let n = 0;

before(async () => {
  root = await tempDir("leader-run-fileguard-");
});

after(async () => {
  await procs.killAll();
  for (const pgid of groups) killGroup(pgid);
  await root.cleanup();
});

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch {
    // gone already
  }
}

function spawnWorker(script: string, config: object): { child: ChildProcess; out: () => string; err: () => string } {
  const child = procs.track(spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(config)], { cwd: repo, stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  let err = "";
  child.stdout?.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (err += c.toString()));
  return { child, out: () => out, err: () => err };
}

/** A campaigner in this process: when it starts leading, and a way to stop it. */
function standby(dir: string): { acquiredAt: () => number | undefined; stop: () => Promise<void> } {
  const lock = new FileLock({ name: "job", identity: "standby", dir, leaseDurationMs: 20_000 });
  let acquiredAt: number | undefined;
  const stop = new AbortController();
  const elector = new LeaderElector({
    lock,
    name: "job",
    leaseDuration: 20_000,
    renewDeadline: 15_000,
    retryPeriod: 300,
    releaseOnCancel: true,
    callbacks: {
      onStartedLeading: (leading) => {
        acquiredAt = performance.now();
        return new Promise<void>((r) => leading.addEventListener("abort", () => r(), { once: true }));
      },
      onStoppedLeading: () => {},
    },
  });
  const running = elector.run(stop.signal);
  return {
    acquiredAt: () => acquiredAt,
    stop: async () => {
      stop.abort();
      await running;
      await lock.close();
    },
  };
}

describe("the guarded child process group survives its leader being SIGKILLed", { timeout: 60_000 }, () => {
  /**
   * The worker records the group and is SIGKILLed at once, a whole retry period before its next renewal
   * could have written the group: only the immediate write can keep the standby out.
   */
  async function scenario(t: { diagnostic: (m: string) => void }, withWatchdog: boolean): Promise<void> {
    const dir = join(root.dir, `guard${++n}`);
    const tag = randomBytes(4).readUInt32BE(0).toString();
    const worker = spawnWorker(guardWorker, {
      dir,
      name: "job",
      identity: "holder",
      leaseDuration: 20_000,
      renewDeadline: 15_000,
      retryPeriod: 4_000,
      tag,
      watchdog: withWatchdog,
    });
    let guarded: string[] = [];
    try {
      await waitFor(
        () => {
          guarded = worker.out().split("\n").find((l) => l.startsWith("guarded "))?.split(" ") ?? [];
          return guarded.length > 0 || worker.child.exitCode !== null;
        },
        30_000,
        "the worker to lead and record its child's group",
      ).catch((e: Error) => {
        throw new Error(`${e.message}\nworker stderr:\n${worker.err()}`);
      });
      await procs.kill(worker.child);
      assert.ok(guarded.length > 0, `worker exited early:\n${worker.err()}`);
      const pgid = Number(guarded[1]);
      const watchdogPid = withWatchdog ? Number(guarded[3]) : undefined;
      groups.add(pgid);
      if (watchdogPid !== undefined) groups.add(watchdogPid);
      assert.equal(guarded[2], "true", "setGuardedProcessGroup reports the group as written");

      const leaderRun = (JSON.parse(await readFile(join(dir, "job"), "utf8")) as { leaderRun: Record<string, unknown> }).leaderRun;
      assert.equal(leaderRun.childPgid, pgid, "the lease file names the group before the next renewal");
      if (watchdogPid !== undefined) assert.equal(leaderRun.watchdogPid, watchdogPid);

      const s = standby(dir);
      try {
        // Without the group in the file the holder is gone and the standby would lead within ~0.7 s.
        await new Promise((r) => setTimeout(r, 2_500));
        assert.equal(s.acquiredAt(), undefined, "the standby started while the dead leader's child group still ran");
        killGroup(pgid);
        if (watchdogPid !== undefined) {
          await new Promise((r) => setTimeout(r, 1_500));
          assert.equal(s.acquiredAt(), undefined, "the standby started while the dead leader's watchdog still ran");
          killGroup(watchdogPid);
        }
        const goneAt = performance.now();
        await waitFor(() => s.acquiredAt() !== undefined, 15_000, "the standby to take over");
        const tookMs = Math.round(s.acquiredAt()! - goneAt);
        t.diagnostic(`standby took over ${tookMs}ms after the last guarded process was killed`);
        // One retry period is 300-660 ms; the 20 s lease could not have expired.
        assert.ok(tookMs < 5_000, `takeover took ${tookMs}ms`);
      } finally {
        await s.stop();
      }
    } finally {
      await procs.kill(worker.child);
    }
  }

  test("a standby waits while the SIGKILLed leader's child group lives, and takes over about one retry period after it is gone", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable: no dead-holder detection");
    await scenario(t, false);
  });

  test("a standby also waits for the dead leader's watchdog, recorded before the child was spawned", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable: no dead-holder detection");
    await scenario(t, true);
  });
});

describe("a standby's watch sees a holder on this host die", { timeout: 60_000 }, () => {
  test("it notifies once the SIGKILLed holder and its group are gone, though the lease file never changed", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable: no dead-holder detection");
    const dir = join(root.dir, `watch${++n}`);
    const tag = randomBytes(4).readUInt32BE(0).toString();
    const worker = spawnWorker(guardWorker, { dir, name: "job", identity: "holder", leaseDuration: 20_000, renewDeadline: 15_000, retryPeriod: 4_000, tag, watchdog: false });
    const lock = new FileLock({ name: "job", identity: "standby", dir, leaseDurationMs: 20_000 });
    const stopWatch = new AbortController();
    try {
      let guarded: string[] = [];
      await waitFor(() => {
        guarded = worker.out().split("\n").find((l) => l.startsWith("guarded "))?.split(" ") ?? [];
        return guarded.length > 0 || worker.child.exitCode !== null;
      }, 30_000, "the worker to lead and record its child's group").catch((e: Error) => {
        throw new Error(`${e.message}\nworker stderr:\n${worker.err()}`);
      });
      assert.ok(guarded.length > 0, `worker exited early:\n${worker.err()}`);
      const pgid = Number(guarded[1]);
      groups.add(pgid);
      await procs.kill(worker.child);
      const before = await readFile(join(dir, "job"), "utf8");
      // The standby has read the record (as its elector does before waiting), then watches.
      assert.equal((await lock.get()).record.holderIdentity, "holder");
      let notified = 0;
      lock.watch(() => notified++, stopWatch.signal);
      // The holder is dead but its child's group still runs: nothing to tell yet.
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(notified, 0, "notified while the dead holder's group still ran");
      killGroup(pgid);
      await waitFor(() => notified > 0, 15_000, "a notification after the group was killed");
      assert.equal(await readFile(join(dir, "job"), "utf8"), before, "the lease file changed");
      // One per holder process, not one per look.
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal(notified, 1);
      assert.equal((await lock.get()).record.holderIdentity, "", "the holder reads as gone");
    } finally {
      stopWatch.abort();
      await lock.close();
      await procs.kill(worker.child);
    }
  });
});

describe("one identity, one process", { timeout: 60_000 }, () => {
  test("a second live process with the same identity is refused with a permanent error, and takes over once the first is SIGKILLed", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable: clashes are not detectable");
    const dir = join(root.dir, `clash${++n}`);
    const log = join(root.dir, `clash${n}.log`);
    const config = { dir, name: "job", identity: "same", log, leaseDuration: 20_000, renewDeadline: 15_000, retryPeriod: 300, holdMs: 0 };
    const lines = async (): Promise<string[]> => (await readFile(log, "utf8").catch(() => "")).split("\n").filter((l) => l !== "");
    const first = spawnWorker(electorWorker, config);
    let second: ReturnType<typeof spawnWorker> | undefined;
    try {
      await waitFor(async () => (await lines()).some((l) => l.startsWith("start ")), 30_000, "the first process to lead");
      second = spawnWorker(electorWorker, config);
      const secondPid = second.child.pid!;
      const clash = async (): Promise<string | undefined> => (await lines()).find((l) => l.startsWith(`error ${secondPid} `));
      await waitFor(async () => (await clash()) !== undefined, 30_000, "the second process to report the clash");
      const message = (await clash())!.slice(`error ${secondPid} `.length);
      assert.match(
        message,
        new RegExp(`^lease "job" \\(.*\\) is held by identity "same" in another live process \\(pid ${first.child.pid}\\); --identity must be unique per process$`),
      );
      await new Promise((r) => setTimeout(r, 1_000));
      assert.equal((await lines()).filter((l) => l.startsWith("start ")).length, 1, "only one of them ever leads");

      // A restart with the same identity: the holder is gone with everything it ran.
      await procs.kill(first.child);
      const killedAt = performance.now();
      await waitFor(async () => (await lines()).some((l) => l.startsWith(`start `) && l.split(" ")[3] === String(secondPid)), 15_000, "the second process to lead");
      const tookMs = Math.round(performance.now() - killedAt);
      t.diagnostic(`second process led ${tookMs}ms after the first was killed`);
      // Well before the 20 s lease could have expired (the margin absorbs a loaded CI machine).
      assert.ok(tookMs < 10_000, `took ${tookMs}ms; the 20 s lease could not have expired`);
    } catch (error) {
      // Failed twice under heavy parallel load without saying why: a failure now carries the workers' log.
      throw new Error(`${(error as Error).message}\nworkers' log:\n${(await lines()).join("\n")}`, { cause: error });
    } finally {
      await procs.kill(first.child);
      if (second) await procs.kill(second.child);
    }
  });
});
