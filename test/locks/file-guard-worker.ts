/**
 * A leader that runs a child the way leader-run does, for the guarded-group tests: run with
 * `node --import tsx file-guard-worker.ts '<json config>'`. It campaigns through LeaderElector +
 * FileLock; once leading (and past its first renewal, so the next one is a whole retry period away) it
 * optionally starts a stand-in watchdog and records it, spawns a detached `sleep 1000.<tag>` (its own
 * process group), records that group with `setGuardedProcessGroup`, and prints one line on stdout:
 *
 *   guarded <pgid> <persisted: true|false> [<watchdog pid>]
 *
 * The test SIGKILLs it right after that line, so nothing of its own stops the group: only the lease
 * file tells a standby that the group is still running.
 */
import { spawn } from "node:child_process";
import { setTimeout as delay } from "node:timers/promises";
import { LeaderElector } from "../../src/election/elector.js";
import { FileLock } from "../../src/locks/file/index.js";

interface GuardWorkerConfig {
  dir: string;
  name: string;
  identity: string;
  leaseDuration: number;
  renewDeadline: number;
  retryPeriod: number;
  /** Makes the sleep processes' command lines unique to this test run. */
  tag: string;
  /** Also start and record a stand-in watchdog (another detached sleep) before the child. */
  watchdog: boolean;
}

const config = JSON.parse(process.argv[2] ?? "{}") as GuardWorkerConfig;
const lock = new FileLock({ name: config.name, identity: config.identity, dir: config.dir, leaseDurationMs: config.leaseDuration });

function sleeper(suffix: string): number {
  const child = spawn("sleep", [`1000.${config.tag}${suffix}`], { detached: true, stdio: "ignore" });
  child.unref();
  if (child.pid === undefined) throw new Error("could not spawn sleep");
  return child.pid;
}

const elector = new LeaderElector({
  lock,
  name: config.name,
  leaseDuration: config.leaseDuration,
  renewDeadline: config.renewDeadline,
  retryPeriod: config.retryPeriod,
  callbacks: {
    onStartedLeading: async (signal) => {
      // The elector renews once right after acquiring; start after that, as a slow spawn would.
      await delay(Math.min(300, config.retryPeriod / 4));
      let watchdogPid: number | undefined;
      if (config.watchdog) {
        watchdogPid = sleeper("1");
        await lock.setGuardedProcessGroup(undefined, { watchdogPid });
      }
      const pgid = sleeper("2");
      const persisted = await lock.setGuardedProcessGroup(pgid, watchdogPid === undefined ? {} : { watchdogPid });
      process.stdout.write(`guarded ${pgid} ${persisted}${watchdogPid === undefined ? "" : ` ${watchdogPid}`}\n`);
      await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    },
    onStoppedLeading: () => {},
  },
});
await elector.run();
