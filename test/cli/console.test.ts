import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger } from "../../src/cli/log.js";
import { routeConsole } from "../../src/cli/main.js";

describe("third-party console output", () => {
  it("goes through leader-run's logger as backend_warning (ioredis' raw [WARN] lines), and is restored after", () => {
    let out = "";
    const log = createLogger({ format: "json", sink: { write: (s: string) => (out += s) } });
    const original = console.warn;
    const restore = routeConsole(log);
    try {
      console.warn("[WARN] Redis server does not require a password, but a password was supplied.");
      console.error("boom %d", 3);
    } finally {
      restore();
    }
    assert.equal(console.warn, original);
    const lines = out.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(
      lines.map((l) => [l.level, l.event, l.msg]),
      [
        ["warn", "backend_warning", "Redis server does not require a password, but a password was supplied."],
        ["warn", "backend_warning", "boom 3"],
      ],
    );
  });
});
