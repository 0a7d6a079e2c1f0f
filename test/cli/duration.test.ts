import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DurationSyntaxError, formatDuration, parseDuration, parseDurationNs } from "../../src/cli/duration.js";

describe("parseDuration: Go / Kubernetes syntax to milliseconds", () => {
  const valid: [string, number][] = [
    ["15s", 15_000],
    ["1m30s", 90_000],
    ["500ms", 500],
    ["2s", 2_000],
    ["1.5h", 5_400_000],
    ["1h2m3.5s", 3_723_500],
    ["1us", 0.001],
    ["1\u00b5s", 0.001], // micro sign
    ["1\u03bcs", 0.001], // Greek mu
    ["250ns", 0.00025],
    [".5s", 500],
    ["5.s", 5_000],
    ["+5s", 5_000],
    ["0", 0],
    ["-0", 0],
    ["0s", 0],
    ["1h1h", 7_200_000],
    // our extension: a bare number is seconds
    ["15", 15_000],
    ["1.5", 1_500],
    [".25", 250],
  ];
  for (const [text, ms] of valid) {
    it(`accepts ${JSON.stringify(text)} as ${ms} ms`, () => {
      assert.equal(parseDuration(text), ms);
    });
  }

  const garbage = ["", "15x", "s", ".s", ".", "1e3s", "5 s", " 5s", "5s ", "1d", "5sec", "ms", "--5s", "+-5s", "-garbage", "1,5s", "0x10s", "NaN", "Infinity"];
  for (const text of garbage) {
    it(`rejects ${JSON.stringify(text)} with a one-line message naming the flag and the Go syntax`, () => {
      assert.throws(
        () => parseDuration(text, "--lease-duration"),
        (e: unknown) =>
          e instanceof DurationSyntaxError &&
          e.problem === "syntax" &&
          e.message === `--lease-duration: ${JSON.stringify(text)} is not a duration; use Go syntax like 15s, 1m30s or 500ms`,
      );
    });
  }

  for (const text of ["-5s", "-1", "-1m30s", "-0.5"]) {
    it(`rejects the negative ${JSON.stringify(text)}`, () => {
      assert.throws(
        () => parseDuration(text, "--wait"),
        (e: unknown) => e instanceof DurationSyntaxError && e.problem === "negative" && e.message.startsWith(`--wait: "${text}" is negative`),
      );
    });
  }

  it("accepts the largest Go duration and rejects one nanosecond more (overflow, as Go)", () => {
    assert.equal(parseDurationNs("9223372036854775807ns"), 9223372036854775807n);
    assert.equal(parseDurationNs("2562047h47m16.854775807s"), 9223372036854775807n);
    for (const text of ["9223372036854775808ns", "2562048h", "99999999999999999999s", "9223372036854775807ns1ns"]) {
      assert.throws(() => parseDuration(text), (e: unknown) => e instanceof DurationSyntaxError && e.problem === "overflow", text);
    }
  });

  it("keeps nanosecond precision in the integer form", () => {
    assert.equal(parseDurationNs("1.000000001s"), 1_000_000_001n);
    assert.equal(parseDurationNs("1m0.5s"), 60_500_000_000n);
  });

  it("without a flag the message starts with the value", () => {
    assert.throws(() => parseDuration("x"), { message: '"x" is not a duration; use Go syntax like 15s, 1m30s or 500ms' });
  });
});

describe("formatDuration: Go's Duration.String()", () => {
  const cases: [number, string][] = [
    [0, "0s"],
    [0.000001, "1ns"],
    [0.0015, "1.5\u00b5s"],
    [1.5, "1.5ms"],
    [500, "500ms"],
    [999, "999ms"],
    [1_000, "1s"],
    [2_500, "2.5s"],
    [60_000, "1m0s"],
    [90_000, "1m30s"],
    [3_600_000, "1h0m0s"],
    [3_723_500, "1h2m3.5s"],
    [-1_500, "-1.5s"],
  ];
  for (const [ms, text] of cases) {
    it(`formats ${ms} ms as ${text}`, () => assert.equal(formatDuration(ms), text));
  }

  it("round-trips through parseDuration", () => {
    for (const ms of [1, 10, 1_234, 15_000, 90_000, 5_400_000, 2_147_483_647]) {
      assert.equal(parseDuration(formatDuration(ms)), ms);
    }
  });
});
