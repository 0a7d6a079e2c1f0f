/**
 * A campaigner for the multi-process file-lock tests: run with `node --import tsx file-elector-worker.ts
 * '<json config>'`. It campaigns on one lease through LeaderElector + FileLock and appends a line to a
 * shared log when its onStartedLeading work begins and ends:
 *
 *   start|stop <monotonic ns> <wall ms> <pid> <identity> <term>
 *   waiting <pid>                  (an acquire attempt did not succeed)
 *   error <pid> <message>          (acquire/renew failures, for the corrupt-file test)
 *
 * The monotonic stamp is process.hrtime (CLOCK_MONOTONIC, one clock for every process on the host), so
 * lines from different processes can be ordered exactly; wall time is only for people reading the log.
 *
 * With `holdMs > 0` it steps down (cancel + release) after leading that long and campaigns again;
 * otherwise it leads until SIGTERM, then stops its work, releases and exits 0.
 */
import { appendFileSync } from "node:fs";
import { LeaderElector } from "../../src/election/elector.js";
import { FileLock } from "../../src/locks/file/index.js";

interface WorkerConfig {
  dir: string;
  name: string;
  identity: string;
  log: string;
  leaseDuration: number;
  renewDeadline: number;
  retryPeriod: number;
  holdMs: number;
  /** Pause between stepping down and campaigning again, so others get a turn. */
  cooldownMs?: number;
}

const config = JSON.parse(process.argv[2] ?? "{}") as WorkerConfig;

function log(kind: string, ...fields: Array<string | number>): void {
  appendFileSync(config.log, `${[kind, ...fields].join(" ")}\n`);
}

function stamp(kind: "start" | "stop", term: number | undefined): void {
  log(kind, process.hrtime.bigint().toString(), Date.now(), process.pid, config.identity, term ?? -1);
}

const lock = new FileLock({ name: config.name, identity: config.identity, dir: config.dir, leaseDurationMs: config.leaseDuration });
let stopping = false;
let campaign = new AbortController();
process.on("SIGTERM", () => {
  stopping = true;
  campaign.abort();
});

while (!stopping) {
  campaign = new AbortController();
  const current = campaign;
  const elector: LeaderElector = new LeaderElector({
    lock,
    name: config.name,
    leaseDuration: config.leaseDuration,
    renewDeadline: config.renewDeadline,
    retryPeriod: config.retryPeriod,
    releaseOnCancel: true,
    callbacks: {
      onStartedLeading: async (signal) => {
        const term = elector.term();
        stamp("start", term);
        await new Promise<void>((resolve) => {
          const timer = config.holdMs > 0 ? setTimeout(resolve, config.holdMs) : undefined;
          signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        });
        stamp("stop", term);
        if (config.holdMs > 0) current.abort();
      },
      onStoppedLeading: () => {},
    },
    onEvent: (event) => {
      if (event.type === "acquire_failed") log("waiting", process.pid);
      if ((event.type === "acquire_failed" || event.type === "renew_failed") && event.error !== undefined) {
        log("error", process.pid, (event.error as Error).message ?? String(event.error));
      }
    },
  });
  await elector.run(campaign.signal);
  if (!stopping && config.cooldownMs) await new Promise((r) => setTimeout(r, config.cooldownMs));
}
await lock.close();
process.exit(0);
