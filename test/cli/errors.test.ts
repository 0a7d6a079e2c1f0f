import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { BackendUnavailableError, ExitCode, NotAcquiredError, UnavailableError, UsageError } from "../../src/cli/errors.js";
import { exitCodeFor, reportError } from "../../src/cli/main.js";
import { ElectionConfigError } from "../../src/election/config.js";
import { ConflictError, PermanentLockError } from "../../src/election/lock.js";
import { HttpListenError } from "../../src/http/errors.js";
import { RedisConfigError } from "../../src/locks/redis/url.js";

function report(e: unknown, debug = false): { code: number; text: string } {
  let text = "";
  const code = reportError(e, { write: (s: string) => (text += s) }, debug);
  return { code, text };
}

describe("exit codes", () => {
  it("match the contract's table", () => {
    assert.deepEqual(ExitCode, { OK: 0, NO_HOLDER: 3, USAGE: 64, UNAVAILABLE: 69, INTERNAL: 70, NOT_ACQUIRED: 75, LOST: 76 });
  });

  it("map each error class", () => {
    assert.equal(exitCodeFor(new UsageError("x")).code, 64);
    assert.equal(exitCodeFor(new BackendUnavailableError("etcd")).code, 64);
    assert.equal(exitCodeFor(new ElectionConfigError("leaseDuration must be greater than renewDeadline")).code, 64);
    assert.equal(exitCodeFor(new RedisConfigError("bad")).code, 64);
    assert.equal(exitCodeFor(new HttpListenError("127.0.0.1:80", "EACCES", "permission denied")).code, 64);
    assert.equal(exitCodeFor(new PermanentLockError("NOAUTH")).code, 69);
    assert.equal(exitCodeFor(new ConflictError("changed")).code, 69);
    assert.equal(exitCodeFor(new UnavailableError("down")).code, 69);
    assert.equal(exitCodeFor(new NotAcquiredError("held")).code, 75);
    assert.equal(exitCodeFor(new NotAcquiredError("held", 9)).code, 9);
    assert.deepEqual(exitCodeFor(new TypeError("boom")), { code: 70, internal: true });
    assert.deepEqual(exitCodeFor("a string"), { code: 70, internal: true });
  });
});

describe("error reporting", () => {
  it("prints known errors as one line `leader-run: <message>`", () => {
    assert.deepEqual(report(new PermanentLockError("WRONGPASS invalid username-password pair")), {
      code: 69,
      text: "leader-run: WRONGPASS invalid username-password pair\n",
    });
  });

  it("an unexpected exception exits 70 with one line asking for a report, the stack only at debug level", () => {
    const e = new TypeError("cannot read properties of undefined");
    const plain = report(e);
    assert.equal(plain.code, 70);
    assert.match(plain.text, /^leader-run: internal error: cannot read properties of undefined; this is a bug in leader-run: please report it with this line and `leader-run --version` \(--log-level debug shows the stack\)\n$/);
    const debug = report(e, true);
    assert.equal(debug.code, 70);
    const lines = debug.text.trimEnd().split("\n");
    assert.match(lines[0] ?? "", /^leader-run: internal error: cannot read properties of undefined; this is a bug in leader-run: please report it with this line and `leader-run --version`$/);
    assert.match(lines[1] ?? "", /^TypeError: cannot read properties of undefined/);
    assert.ok(lines.length > 2, "stack frames follow");
  });

  it("keeps multi-line messages on one line and passwords out", () => {
    const r = report(new PermanentLockError("auth failed for redis://app:hunter2@r:6379\nsecond line"));
    assert.equal(r.text, "leader-run: auth failed for redis://app@r:6379; second line\n");
  });
});
