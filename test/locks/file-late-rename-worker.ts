/**
 * The processes of file-late-rename.test.ts, each run under strace:
 * - `slow`, whose rename() strace delays: it creates the lease, and on "go" renews it (the rename is
 *   abandoned at fsTimeoutMs and lands seconds later); on "check" it tries to renew again and says
 *   whether the lock let it;
 * - `breaker`, whose unlink() strace makes fail: it takes the lease over (breaking the slow writer's
 *   critical section by age) without being able to remove the slow writer's temp file.
 */
import { createInterface } from "node:readline";
import { FileLock } from "../../src/locks/file/index.js";

const config = JSON.parse(process.argv[2] ?? "{}") as {
  role: "slow" | "breaker";
  dir: string;
  name: string;
  identity: string;
  fsTimeoutMs: number;
  staleMs: number;
};
const lock = new FileLock({
  name: config.name,
  identity: config.identity,
  dir: config.dir,
  fsTimeoutMs: config.fsTimeoutMs,
  criticalSectionStaleMs: config.staleMs,
  leaseDurationMs: 60_000,
});
const record = (term: number) => {
  const now = new Date();
  return { holderIdentity: config.identity, leaseDurationSeconds: 60, acquireTime: now, renewTime: now, leaderTransitions: term };
};
const say = (line: string): void => {
  process.stdout.write(`${line.replace(/\n/g, " ")}\n`);
};

if (config.role === "breaker") {
  await lock.get();
  await lock.update(record(2));
  say("wrote");
  // Stay alive until the test ends (kills us or closes our stdin): once we are gone our record reads as a dead holder's, released, and
  // the test's look at it right after "wrote" raced our exit (seen failing under load).
  for await (const _line of createInterface({ input: process.stdin })) {
    // until our stdin closes
  }
  process.exit(0);
}
await lock.create(record(1));
await lock.get();
say("ready");
for await (const line of createInterface({ input: process.stdin })) {
  if (line === "go") {
    try {
      await lock.update(record(1));
      say("renewed");
    } catch (err) {
      say(`abandoned ${(err as Error).message}`);
    }
  } else if (line === "check") {
    try {
      await lock.get();
      await lock.update(record(2));
      say("accepted");
    } catch (err) {
      say(`refused ${(err as Error).name}: ${(err as Error).message}`);
    }
  }
}
