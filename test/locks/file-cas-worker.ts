/**
 * A compare-and-swap stress writer for the multi-process file-lock tests: run with
 * `node --import tsx file-cas-worker.ts '<json config>'`. It repeats get + update (incrementing
 * leaderTransitions) `iterations` times, or until killed when 0, and prints how many updates it won.
 */
import { ConflictError } from "../../src/election/lock.js";
import { FileLock } from "../../src/locks/file/index.js";

const config = JSON.parse(process.argv[2] ?? "{}") as { dir: string; name: string; identity: string; iterations: number };
const lock = new FileLock({ name: config.name, identity: config.identity, dir: config.dir });
let wins = 0;
for (let i = 0; config.iterations === 0 || i < config.iterations; i++) {
  const { record } = await lock.get();
  try {
    await lock.update({ ...record, holderIdentity: config.identity, leaderTransitions: record.leaderTransitions + 1 });
    wins++;
  } catch (err) {
    if (!(err instanceof ConflictError)) throw err;
  }
}
process.stdout.write(`${wins}\n`);
