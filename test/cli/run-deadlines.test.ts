import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { GUARD_SIGNAL_SLACK_MS, KILL_MARGIN_MS, leaseDeadlines, safeGraceMs } from "../../src/cli/run-deadlines.js";

const timings = { leaseDurationMs: 3000, renewDeadlineMs: 2000, killGraceMs: 500 };

describe("lease deadlines for the guard", () => {
  test("signal a little after sentAt + RD (leader-run signals first), SIGKILL after the grace", () => {
    const d = leaseDeadlines(1000, timings);
    assert.deepEqual(d, { signalAt: 3000 + GUARD_SIGNAL_SLACK_MS, killAt: 3500, successorEarliest: 4000, marginMs: KILL_MARGIN_MS });
  });

  test("followers count whole seconds of lease duration: SIGKILL comes before the truncated lease ends", () => {
    const d = leaseDeadlines(0, { leaseDurationMs: 3900, renewDeadlineMs: 2000, killGraceMs: 1800 });
    assert.equal(d.successorEarliest, 3000);
    assert.equal(d.killAt, 3000 - KILL_MARGIN_MS);
    assert.ok(d.signalAt <= d.killAt);
  });

  test("a long lease keeps the election core's clock-rate margin (2%), not just 200 ms", () => {
    // --lease-duration 60s --renew-deadline 40s --kill-grace 19.9s is accepted; the group must still be
    // dead 1.2 s before a successor may start, as term.ts budgets it.
    const d = leaseDeadlines(0, { leaseDurationMs: 60_000, renewDeadlineMs: 40_000, killGraceMs: 19_900 });
    assert.equal(d.killAt, 60_000 - 1_200);
    assert.equal(safeGraceMs(d, 19_900, 50_000), 60_000 - 1_200 - 50_000);
  });

  test("signalAt never comes after killAt", () => {
    const d = leaseDeadlines(0, { leaseDurationMs: 2500, renewDeadlineMs: 2000, killGraceMs: 100 });
    assert.equal(d.successorEarliest, 2000);
    assert.equal(d.killAt, 1800);
    assert.equal(d.signalAt, 1800);
  });
});

describe("a late stop's grace", () => {
  const d = leaseDeadlines(0, timings);

  test("a stop on time gets the whole --kill-grace", () => {
    assert.equal(safeGraceMs(d, 500, 2000), 500);
  });

  test("a stop that starts late gets only what is still safe", () => {
    assert.equal(safeGraceMs(d, 500, 2600), 3000 - KILL_MARGIN_MS - 2600);
  });

  test("past the safe point: SIGKILL at once", () => {
    assert.equal(safeGraceMs(d, 500, 3900), 0);
    assert.equal(safeGraceMs(d, 500, 10_000), 0);
  });

  test("before any lease write, the configured grace", () => {
    assert.equal(safeGraceMs(undefined, 500, 123), 500);
  });
});
