import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BoundedFs, FileSystemHungError, FileSystemUnusableError } from "../../src/locks/file/bounded.js";
import { mountTypes, needsProbe } from "../../src/locks/file/probe.js";
import { hungCalls } from "../../src/locks/hung-calls.js";

/** The time bound of the file lock's calls (src/locks/file/bounded.ts); the real hung mount is in test/e2e/hung-fs.test.ts. */
describe("bounded file-system calls", () => {
  test("a call that does not answer is abandoned; while it hangs, calls there fail at once without starting", async () => {
    let permanent = true;
    const fs = new BoundedFs(`/bounded-test-${process.pid}`, 50, () => permanent);
    let release: () => void = () => undefined;
    const hanging = new Promise<void>((resolve) => (release = resolve));
    const before = hungCalls().count;
    await assert.rejects(fs.run("lstat /x", "/x", () => hanging), (e: Error) => e instanceof FileSystemUnusableError && /\/x: the file system did not answer within 50ms \(lstat \/x is still pending\)/.test(e.message));
    assert.equal(hungCalls().count, before + 1);
    permanent = false;
    let started = false;
    await assert.rejects(
      fs.run("read /y", "/y", async () => {
        started = true;
      }),
      (e: Error) => e instanceof FileSystemHungError && !(e instanceof FileSystemUnusableError) && /lstat \/x has not returned for/.test(e.message),
    );
    assert.equal(started, false, "a call started while another hangs");
    release();
    await hanging;
    await new Promise((r) => setImmediate(r));
    assert.equal(hungCalls().count, before);
    assert.equal(await fs.run("read /y", "/y", async () => "answered"), "answered");
  });

  test("errors and values of calls that answer in time pass through", async () => {
    const fs = new BoundedFs(`/bounded-test-${process.pid}-2`, 5000, () => true);
    assert.equal(await fs.run("a", "/a", async () => 42), 42);
    await assert.rejects(fs.run("a", "/a", async () => Promise.reject(Object.assign(new Error("gone"), { code: "ENOENT" }))), { code: "ENOENT" });
  });

  test("only file systems that can hang are probed", async () => {
    assert.equal(needsProbe(["ext4", "tmpfs", "overlay"]), false);
    assert.equal(needsProbe(["ext4", "fuse.sshfs"]), true);
    assert.equal(needsProbe(["nfs4"]), true);
    assert.equal(needsProbe(undefined), false);
    const types = mountTypes("/");
    if (types !== undefined) assert.ok(types.length >= 1, "the root's own file system");
  });
});
