import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { isRestartMode, RestartPolicy } from "../../src/child/restart.js";
import { parseSignal, parseGroupStat, signalNumber } from "../../src/child/process-group.js";
import { toChildExit } from "../../src/child/supervisor.js";

const ok = { exitCode: 0 };
const failed = { exitCode: 1 };
const killed = toChildExit(null, "SIGKILL");

describe("RestartPolicy", () => {
  test("never restarts in mode never", () => {
    const p = new RestartPolicy({ mode: "never", initialDelayMs: 1000 });
    assert.equal(p.nextDelay(failed, 10), undefined);
    assert.equal(p.nextDelay(ok, 10), undefined);
  });

  test("on-failure restarts after a non-zero status or a signal, not after success", () => {
    const p = new RestartPolicy({ mode: "on-failure", initialDelayMs: 1000 });
    assert.equal(p.nextDelay(ok, 10), undefined);
    assert.equal(p.nextDelay(failed, 10), 1000);
    assert.equal(killed.exitCode, 137);
    assert.equal(p.nextDelay(killed, 10), 2000);
  });

  test("always restarts after success too", () => {
    const p = new RestartPolicy({ mode: "always", initialDelayMs: 500 });
    assert.equal(p.nextDelay(ok, 10), 500);
    assert.equal(p.nextDelay(ok, 10), 1000);
  });

  test("the delay doubles up to the cap (default 5 minutes)", () => {
    const p = new RestartPolicy({ mode: "always", initialDelayMs: 1000 });
    const delays = Array.from({ length: 11 }, () => p.nextDelay(failed, 100));
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000]);
  });

  test("a healthy run (default 60 s) starts the sequence over", () => {
    const p = new RestartPolicy({ mode: "on-failure", initialDelayMs: 1000 });
    assert.deepEqual([p.nextDelay(failed, 5), p.nextDelay(failed, 5), p.nextDelay(failed, 5)], [1000, 2000, 4000]);
    assert.equal(p.nextDelay(failed, 59_999), 8000);
    assert.equal(p.nextDelay(failed, 60_000), 1000);
    assert.equal(p.nextDelay(failed, 5), 2000);
  });

  test("custom cap and reset threshold; a first delay above the cap becomes the cap", () => {
    const p = new RestartPolicy({ mode: "always", initialDelayMs: 100, maxDelayMs: 250, resetAfterMs: 1000 });
    assert.deepEqual([p.nextDelay(ok, 0), p.nextDelay(ok, 0), p.nextDelay(ok, 0), p.nextDelay(ok, 1000)], [100, 200, 250, 100]);
    const big = new RestartPolicy({ mode: "always", initialDelayMs: 10 * 60_000 });
    assert.deepEqual([big.nextDelay(ok, 0), big.nextDelay(ok, 0)], [600_000, 600_000]);
  });

  test("a zero delay stays zero", () => {
    const p = new RestartPolicy({ mode: "always", initialDelayMs: 0 });
    assert.deepEqual([p.nextDelay(ok, 0), p.nextDelay(ok, 0)], [0, 0]);
  });

  test("reset() starts the sequence over", () => {
    const p = new RestartPolicy({ mode: "always", initialDelayMs: 10 });
    p.nextDelay(ok, 0);
    p.nextDelay(ok, 0);
    p.reset();
    assert.equal(p.nextDelay(ok, 0), 10);
  });

  test("bad settings are refused", () => {
    assert.throws(() => new RestartPolicy({ mode: "sometimes" as "always", initialDelayMs: 1 }), RangeError);
    assert.throws(() => new RestartPolicy({ mode: "always", initialDelayMs: -1 }), RangeError);
    assert.throws(() => new RestartPolicy({ mode: "always", initialDelayMs: Number.NaN }), RangeError);
    assert.equal(isRestartMode("on-failure"), true);
    assert.equal(isRestartMode("on_failure"), false);
  });
});

describe("signal and exit helpers", () => {
  test("toChildExit reports the code, or 128+N for signal N", () => {
    assert.deepEqual(toChildExit(3, null), { code: 3, signal: null, exitCode: 3 });
    assert.deepEqual(toChildExit(null, "SIGTERM"), { code: null, signal: "SIGTERM", exitCode: 143 });
    assert.equal(toChildExit(null, null).exitCode, 1);
  });

  test("parseSignal accepts names with or without SIG, any case, and numbers", () => {
    assert.equal(parseSignal("TERM"), "SIGTERM");
    assert.equal(parseSignal("sigint"), "SIGINT");
    assert.equal(parseSignal("SIGKILL"), "SIGKILL");
    assert.equal(parseSignal("9"), "SIGKILL");
    assert.equal(parseSignal("SIGNOPE"), undefined);
    assert.equal(parseSignal("999"), undefined);
    assert.equal(signalNumber("SIGHUP"), 1);
  });

  test("parseGroupStat reads state and group even when the command name contains ') '", () => {
    assert.deepEqual(parseGroupStat("42 (a) b (c)) S 1 4242 4242 0 -1"), { state: "S", pgrp: 4242 });
    assert.equal(parseGroupStat("garbage"), undefined);
  });
});
