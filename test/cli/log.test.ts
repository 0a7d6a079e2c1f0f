import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger, effectiveLevel } from "../../src/cli/log.js";
import type { LoggerOptions } from "../../src/cli/log.js";

function capture(options: LoggerOptions = {}): { lines: string[]; log: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  const log = createLogger({
    now: () => new Date("2024-05-01T12:00:00.123Z"),
    ...options,
    sink: { write: (s: string) => lines.push(s) },
  });
  return { lines, log };
}

describe("logger", () => {
  it("writes one text line per event with the event name, lease, identity and term", () => {
    const { lines, log } = capture();
    log.child({ lease: "node-cron-js", identity: "web-1_ab12cd34" }).info("acquired", { term: 3 });
    assert.deepEqual(lines, ["2024-05-01T12:00:00.123Z leader-run INFO  acquired lease=node-cron-js identity=web-1_ab12cd34 term=3\n"]);
  });

  it("quotes text values with spaces or quotes, and adds the message as msg", () => {
    const { lines, log } = capture();
    log.warn("renew_failed", { error: new Error("connection refused"), empty: "" }, 'will retry "soon"');
    assert.equal(lines[0], '2024-05-01T12:00:00.123Z leader-run WARN  renew_failed error="connection refused" empty="" msg="will retry \\"soon\\""\n');
  });

  it("writes JSON lines with --log-format json", () => {
    const { lines, log } = capture({ format: "json" });
    log.child({ lease: "x", identity: "id" }).info("child_exited", { exit_code: 0, signal: undefined, at: new Date(0) });
    assert.equal(lines.length, 1);
    assert.ok(lines[0]?.endsWith("\n"));
    assert.deepEqual(JSON.parse(lines[0] ?? ""), {
      time: "2024-05-01T12:00:00.123Z",
      level: "info",
      event: "child_exited",
      lease: "x",
      identity: "id",
      exit_code: 0,
      at: "1970-01-01T00:00:00.000Z",
    });
  });

  it("filters by level: debug only at debug, renewed is hidden at info", () => {
    const info = capture();
    info.log.debug("renewed", {});
    info.log.info("acquired", {});
    assert.equal(info.lines.length, 1);
    const debug = capture({ level: "debug" });
    debug.log.debug("renewed", {});
    assert.equal(debug.lines.length, 1);
    assert.ok(debug.log.isEnabled("debug"));
  });

  it("--quiet keeps warnings and errors only, whatever lower level was asked", () => {
    assert.equal(effectiveLevel("info", true), "warn");
    assert.equal(effectiveLevel("debug", true), "warn");
    assert.equal(effectiveLevel("error", true), "error");
    assert.equal(effectiveLevel("debug", false), "debug");
    const { lines, log } = capture({ level: effectiveLevel("info", true) });
    log.info("acquired", {});
    log.warn("renew_failed", {});
    log.error("lost", {});
    assert.deepEqual(lines.map((l) => l.trim().split(/\s+/)[3]), ["renew_failed", "lost"]);
  });

  it("never prints a password, in text or JSON, in fields, errors or messages", () => {
    for (const format of ["text", "json"] as const) {
      const { lines, log } = capture({ format });
      log.child({ lock: "redis://app:hunter2@redis:6379/0" }).error(
        "acquire_failed",
        { error: new Error("cannot reach rediss://:hunter2@r:6380"), args: ["postgres://u:hunter2@db/x"] },
        "url postgres://db/x?password=hunter2",
      );
      assert.equal(lines.length, 1);
      assert.ok(!lines[0]?.includes("hunter2"), lines[0]);
      assert.ok(lines[0]?.includes("redis://app@redis:6379/0"), lines[0]);
    }
  });

  it("survives a broken stderr", () => {
    const log = createLogger({ sink: { write: () => { throw new Error("EPIPE"); } } });
    assert.doesNotThrow(() => log.error("lost", {}));
  });
});
