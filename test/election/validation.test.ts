/**
 * Config validation (reference cases 1–7 and 38, deviation D6): client-go's checks with its exact
 * messages in its order come first; then leader-run's `leaseDuration must be at least 1s`.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { LeaderElector, runOrDie } from "../../src/election/elector.js";
import { ElectionConfigError } from "../../src/election/config.js";
import type { ElectionConfig, LeaderCallbacks } from "../../src/election/config.js";
import type { ResourceLock } from "../../src/election/lock.js";
import { MemoryLock } from "../../src/locks/memory/index.js";
import { Candidate, RecordingMetrics, S, newEnv } from "./harness.js";

function config(overrides: Partial<ElectionConfig> = {}): ElectionConfig {
  const env = newEnv();
  return {
    lock: new MemoryLock(env.store, "baz"),
    leaseDuration: 15 * S,
    renewDeadline: 10 * S,
    retryPeriod: 2 * S,
    clock: env.clock,
    callbacks: { onStartedLeading() {}, onStoppedLeading() {} },
    ...overrides,
  };
}

function rejects(cfg: ElectionConfig, message: string | RegExp): void {
  assert.throws(
    () => new LeaderElector(cfg),
    (err: unknown) => {
      assert.ok(err instanceof ElectionConfigError, `expected ElectionConfigError, got ${String(err)}`);
      if (typeof message === "string") assert.equal(err.message, message);
      else assert.match(err.message, message);
      return true;
    },
  );
}

describe("config validation (client-go order and messages)", () => {
  test("case 1: a valid config constructs and sets the leader gauge to 0", () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { name: "foo" });
    assert.ok(c.le instanceof LeaderElector);
    assert.deepEqual(c.timeline, ["metric:leaderOff:foo"]);
    assert.equal(c.le.isLeader(), false);
    assert.equal(c.le.getLeader(), "");
  });

  test("case 2: leaseDuration equal to renewDeadline is rejected", () => {
    rejects(config({ leaseDuration: 10 * S, renewDeadline: 10 * S }), "leaseDuration must be greater than renewDeadline");
  });

  test("case 3: renewDeadline must exceed 1.2 x retryPeriod strictly", () => {
    const msg = "renewDeadline must be greater than retryPeriod*JitterFactor";
    rejects(config({ retryPeriod: 2 * S, renewDeadline: 2400 }), msg);
    assert.doesNotThrow(() => new LeaderElector(config({ retryPeriod: 2 * S, renewDeadline: 2401 })));
    rejects(config({ retryPeriod: 5 * S, renewDeadline: 6 * S }), msg);
  });

  test("case 4: LD 15s, RD 2s, RP 1s is accepted", () => {
    assert.doesNotThrow(() => new LeaderElector(config({ leaseDuration: 15 * S, renewDeadline: 2 * S, retryPeriod: 1 * S })));
  });

  test("case 5: a zero retryPeriod is reported as such, all-zero durations report the first check", () => {
    rejects(config({ retryPeriod: 0 }), "retryPeriod must be greater than zero");
    rejects(config({ leaseDuration: 0, renewDeadline: 0, retryPeriod: 0 }), "leaseDuration must be greater than renewDeadline");
    rejects(config({ renewDeadline: -1, retryPeriod: 2 * S }), "renewDeadline must be greater than retryPeriod*JitterFactor");
  });

  test("case 6: missing onStartedLeading / onStoppedLeading are rejected, missing onNewLeader is fine", () => {
    rejects(
      config({ callbacks: { onStoppedLeading() {} } as unknown as LeaderCallbacks }),
      "OnStartedLeading callback must not be nil",
    );
    rejects(
      config({ callbacks: { onStartedLeading() {} } as unknown as LeaderCallbacks }),
      "OnStoppedLeading callback must not be nil",
    );
    assert.doesNotThrow(() => new LeaderElector(config({ callbacks: { onStartedLeading() {}, onStoppedLeading() {} } })));
  });

  test("case 7: a missing lock or an empty identity is rejected", () => {
    rejects(config({ lock: null as unknown as ResourceLock }), "Lock must not be nil.");
    const env = newEnv();
    rejects(config({ lock: new MemoryLock(env.store, "") }), "Lock identity is empty");
  });

  test("case 7: runOrDie throws ElectionConfigError on an invalid config and touches no lock", async () => {
    const env = newEnv();
    const lock = new MemoryLock(env.store, "");
    await assert.rejects(async () => runOrDie(new AbortController().signal, config({ lock })), ElectionConfigError);
    const lock2 = new MemoryLock(env.store, "baz");
    await assert.rejects(
      async () => runOrDie(new AbortController().signal, config({ lock: lock2, retryPeriod: 0 })),
      (err: unknown) => err instanceof ElectionConfigError && err.message === "retryPeriod must be greater than zero",
    );
    assert.deepEqual(lock2.calls, []);
  });

  test("case 38 adapted (D6): a lease under 1s is rejected at construction with a fix-it message", () => {
    rejects(config({ leaseDuration: 900, renewDeadline: 800, retryPeriod: 500 }), /^leaseDuration must be at least 1s/);
    rejects(config({ leaseDuration: 999, renewDeadline: 800, retryPeriod: 500 }), /^leaseDuration must be at least 1s/);
    assert.doesNotThrow(() => new LeaderElector(config({ leaseDuration: 1000, renewDeadline: 800, retryPeriod: 500 })));
  });

  test("D6: client-go's checks come before the 1s minimum", () => {
    rejects(config({ leaseDuration: 900, renewDeadline: 900, retryPeriod: 500 }), "leaseDuration must be greater than renewDeadline");
    rejects(config({ leaseDuration: 900, renewDeadline: 600, retryPeriod: 500 }), "renewDeadline must be greater than retryPeriod*JitterFactor");
  });

  test("case 38: a 1.5s lease is written as leaseDurationSeconds 1 (whole seconds, truncated)", async () => {
    const env = newEnv();
    // RD below the 1s followers see (client-go's RD 1.2s is rejected: see term.test.ts).
    const c = new Candidate(env, "baz", { leaseDuration: 1500, renewDeadline: 800, retryPeriod: 500 });
    assert.equal(await c.le.tryAcquireOrRenew(), true);
    assert.equal(env.store.read()?.leaseDurationSeconds, 1);
  });

  test("the metrics provider in the config receives the gauge, not only a global one", () => {
    const log: string[] = [];
    new LeaderElector(config({ name: "lease-x", metrics: new RecordingMetrics(log) }));
    assert.deepEqual(log, ["metric:leaderOff:lease-x"]);
  });
});
