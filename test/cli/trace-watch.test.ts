/**
 * The debug-level trace of a lock's change notifications must pass everything through: the record a
 * notification carries and the watch's health decide how often a waiting candidate reads the backend.
 * The first version dropped both, so every candidate run with --log-level debug (the bench's) polled
 * every retry period and read at every renewal.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { ResourceLock, WatchHealth, WatchedRecord } from "../../src/election/lock.js";
import { emptyRecord } from "../../src/election/record.js";
import { createLogger } from "../../src/cli/log.js";
import { traceWatch } from "../../src/cli/run.js";

test("traceWatch logs lease_changed and passes the notified record and the watch health on", () => {
  const seen: WatchedRecord = { record: { ...emptyRecord(), holderIdentity: "a", leaseDurationSeconds: 15 }, raw: "{\"holderIdentity\":\"a\"}" };
  const lines: string[] = [];
  const lock = {
    watch(onChange: (seen?: WatchedRecord) => void, _signal: AbortSignal, onHealth?: (health: WatchHealth) => void): void {
      onHealth?.("connected");
      onChange(seen);
      onChange();
    },
  } as unknown as ResourceLock;
  traceWatch(lock, createLogger({ level: "debug", format: "json", sink: { write: (s: string) => void lines.push(s) } }));
  const changes: Array<WatchedRecord | undefined> = [];
  const health: WatchHealth[] = [];
  lock.watch?.((s) => changes.push(s), new AbortController().signal, (h) => health.push(h));
  assert.deepEqual(health, ["connected"]);
  assert.deepEqual(changes, [seen, undefined]);
  assert.equal(lines.filter((l) => l.includes("lease_changed")).length, 2);
});
