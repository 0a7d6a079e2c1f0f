/**
 * Issue #9: the CLI's timing checks use the lease duration followers see, the record's whole seconds.
 * `--lease-duration 5.9s --renew-deadline 2s --kill-grace 3.8s` overlapped on Redis: 2s + 3.8s < 5.9s,
 * but every other process waits only 5s.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { UsageError } from "../../src/cli/errors.js";
import { parseCommandLine, validateTimings } from "../../src/cli/options.js";

function usageError(message: RegExp | string) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    if (typeof message === "string") assert.equal(err.message, message);
    else assert.match(err.message, message);
    return true;
  };
}

describe("timings in whole seconds", () => {
  it("rejects a kill grace that only fits the fractional lease duration, saying the record stores whole seconds", () => {
    assert.throws(
      () => validateTimings({ leaseDurationMs: 5900, renewDeadlineMs: 2000, retryPeriodMs: 500, killGraceMs: 3800 }),
      usageError(
        "--kill-grace 3.8s is too long: renew-deadline 2s + kill-grace 3.8s must stay below lease-duration 5s (lease records store whole seconds, so --lease-duration 5.9s counts as 5s) so the command is dead before another process can take over; lower --kill-grace to 1.5s or raise --lease-duration to 10s",
      ),
    );
    assert.equal(validateTimings({ leaseDurationMs: 5900, renewDeadlineMs: 2000, retryPeriodMs: 500, killGraceMs: 2900 }), 2900);
  });

  it("derives the grace from the whole seconds", () => {
    assert.equal(validateTimings({ leaseDurationMs: 5900, renewDeadlineMs: 2000, retryPeriodMs: 500 }), 1500);
    assert.equal(validateTimings({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2000 }), 2500);
  });

  it("rejects a renew deadline that is not below the whole-second lease duration", () => {
    assert.throws(
      () => validateTimings({ leaseDurationMs: 5900, renewDeadlineMs: 5500, retryPeriodMs: 1000 }),
      usageError(
        "--lease-duration 5.9s is stored as 5s (lease records store whole seconds), which must be greater than --renew-deadline 5.5s; raise --lease-duration to 6s or lower --renew-deadline below 5s",
      ),
    );
  });

  it("the command line gives the same one-line error", async () => {
    await assert.rejects(
      parseCommandLine(["--lease-duration", "5.9s", "--renew-deadline", "2s", "--retry-period", "500ms", "--kill-grace", "3.8s", "--", "x"], { env: {}, cwd: "/srv/app" }),
      usageError(/counts as 5s/),
    );
  });
});
