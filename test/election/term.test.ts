/**
 * Issue #9, "timing arithmetic in one place": the Term and what is derived from it. Followers wait the
 * record's whole seconds, so every safety check uses `floor(LD / 1s)`, not the configured duration.
 */
import { describe, mock, test } from "node:test";
import assert from "node:assert/strict";
import { LeaderElector } from "../../src/election/elector.js";
import { ElectionConfigError } from "../../src/election/config.js";
import { MAX_TIMER_MS, SystemClock } from "../../src/election/clock.js";
import { Term, defaultKillMarginMs, effectiveLeaseDurationMs } from "../../src/election/term.js";
import { MemoryLock } from "../../src/locks/memory/index.js";
import * as index from "../../src/index.js";
import { Candidate, S, abortAndWait, newEnv } from "./harness.js";

describe("Term", () => {
  test("effective lease duration is the whole seconds the record carries", () => {
    assert.equal(effectiveLeaseDurationMs(5900), 5000);
    assert.equal(effectiveLeaseDurationMs(15_000), 15_000);
    assert.equal(effectiveLeaseDurationMs(1500), 1000);
  });

  test("deadlines count from the last write sent; an older answer never moves them back", () => {
    const t = new Term(7, 1000, 5900, 2000);
    assert.equal(t.term, 7);
    assert.equal(t.effectiveLeaseDurationMs, 5000);
    assert.equal(t.stopDeadline, 3000);
    assert.equal(t.successorEarliestStart, 6000);
    t.renewed(2500);
    assert.equal(t.lastRenewSent, 2500);
    assert.equal(t.stopDeadline, 4500);
    assert.equal(t.successorEarliestStart, 7500);
    t.renewed(2000);
    assert.equal(t.lastRenewSent, 2500);
    assert.equal(t.acquiredAt, 1000);
  });

  test("kill budget: time left before a successor may start, minus the margin, never negative", () => {
    const t = new Term(0, 0, 15_000, 10_000);
    assert.equal(t.killMarginMs, defaultKillMarginMs(15_000));
    assert.equal(t.killMarginMs, 300);
    assert.equal(t.killBudgetMs(10_000), 15_000 - 300 - 10_000);
    assert.equal(t.killBudgetMs(10_000, 0), 5000);
    assert.equal(t.killBudgetMs(14_900), 0);
    assert.equal(new Term(0, 0, 1000, 800).killMarginMs, 100, "at least 100ms");
  });

  test("a view is a frozen snapshot", () => {
    const t = new Term(1, 0, 15_000, 10_000);
    const v = t.view();
    t.renewed(2000);
    t.end();
    assert.equal(v.lastRenewSent, 0);
    assert.equal(v.active, true);
    assert.equal(v.killBudgetMs(10_000), 4700);
    assert.ok(Object.isFrozen(v));
    assert.equal(t.view().active, false);
    assert.equal(t.view().stopDeadline, 12_000);
  });

  test("Term and effectiveLeaseDurationMs are exported from the package index", () => {
    assert.equal(index.Term, Term);
    assert.equal(index.effectiveLeaseDurationMs, effectiveLeaseDurationMs);
  });
});

describe("the elector's term", () => {
  test("currentTerm() follows acquisition and renewals, and describes the last term once it ended", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { leaseDuration: 5900, renewDeadline: 4000, retryPeriod: 1000 });
    assert.equal(c.le.currentTerm(), undefined);
    const h = c.run();
    await env.clock.advanceTo(500);
    let v = c.le.currentTerm();
    assert.ok(v);
    assert.equal(v.term, 0);
    assert.equal(v.active, true);
    assert.equal(v.acquiredAt, 0);
    assert.equal(v.stopDeadline, 4000);
    assert.equal(v.successorEarliestStart, 5000, "whole seconds: 5.9s is 5s to followers");
    await env.clock.advanceTo(1500); // renewed at 1s
    v = c.le.currentTerm();
    assert.equal(v?.lastRenewSent, 1000);
    assert.equal(v?.stopDeadline, 5000);
    const last = c.electionEvents.filter((e) => e.type === "renewed").at(-1);
    assert.equal(last?.type === "renewed" ? last.sentAt : undefined, v?.lastRenewSent, "the event and the term agree");
    await abortAndWait(env, h);
    v = c.le.currentTerm();
    assert.equal(v?.active, false);
    assert.equal(v?.term, 0);
  });

  test("work that does not stop blocks the release until lastRenewSent + the whole-second lease, not the configured one", async () => {
    const env = newEnv();
    const c = new Candidate(env, "baz", { leaseDuration: 5900, renewDeadline: 2000, retryPeriod: 500, releaseOnCancel: true, workStopDelay: Infinity });
    const h = c.run();
    await env.clock.advanceTo(1200); // last renewal sent at 1s
    h.controller.abort();
    await env.clock.runUntil(() => h.settled, 20 * S, "run to give up on the work");
    assert.equal(h.settledAt, 1000 + 5000);
    assert.ok(c.electionEvents.some((e) => e.type === "work_overran"));
    assert.equal(env.store.read()?.holderIdentity, "baz", "never released while the work may still run");
  });
});

describe("validation uses the lease duration followers see", () => {
  const base = (leaseDuration: number, renewDeadline: number, retryPeriod = 500) => {
    const env = newEnv();
    return {
      lock: new MemoryLock(env.store, "baz"),
      leaseDuration,
      renewDeadline,
      retryPeriod,
      clock: env.clock,
      callbacks: { onStartedLeading() {}, onStoppedLeading() {} },
    };
  };

  test("5.9s against a 5.5s renew deadline is rejected: the record says 5s", () => {
    assert.throws(
      () => new LeaderElector(base(5900, 5500)),
      (err: unknown) =>
        err instanceof ElectionConfigError &&
        err.message ===
          "leaseDuration must be greater than renewDeadline in whole seconds: lease records store whole seconds, so leaseDuration 5900ms is seen by other processes as 5000ms, which is not greater than renewDeadline 5500ms; raise leaseDuration to 6000ms or lower renewDeadline below 5000ms",
    );
    assert.throws(() => new LeaderElector(base(1500, 1200)), /seen by other processes as 1000ms/);
    assert.doesNotThrow(() => new LeaderElector(base(5900, 4900)));
    assert.doesNotThrow(() => new LeaderElector(base(1500, 800)));
  });
});

describe("SystemClock timers longer than 2^31-1 ms", () => {
  test("do not fire at once (Node would run them after 1ms)", async () => {
    const clock = new SystemClock();
    let fired = 0;
    const timers = [clock.setTimer(() => (fired += 1), 2 ** 31), clock.setTimer(() => (fired += 1), 30 * 24 * 3600 * 1000), clock.setTimer(() => (fired += 1), Infinity)];
    const control = await new Promise<boolean>((resolve) => clock.setTimer(() => resolve(true), 20));
    await new Promise((resolve) => setTimeout(resolve, 30));
    for (const t of timers) t.cancel();
    assert.equal(control, true);
    assert.equal(fired, 0);
  });

  test("fire when asked, waiting in steps of at most 2^31-1 ms", () => {
    mock.timers.enable({ apis: ["setTimeout"] });
    try {
      const clock = new SystemClock();
      let fired = 0;
      clock.setTimer(() => (fired += 1), 2 * MAX_TIMER_MS + 5);
      mock.timers.tick(MAX_TIMER_MS);
      mock.timers.tick(MAX_TIMER_MS);
      assert.equal(fired, 0);
      mock.timers.tick(4);
      assert.equal(fired, 0);
      mock.timers.tick(1);
      assert.equal(fired, 1);
      const cancelled = clock.setTimer(() => (fired += 1), MAX_TIMER_MS + 10);
      mock.timers.tick(MAX_TIMER_MS);
      cancelled.cancel();
      mock.timers.tick(10);
      assert.equal(fired, 1, "cancel also stops a timer between its steps");
    } finally {
      mock.timers.reset();
    }
  });
});
