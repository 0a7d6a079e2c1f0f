import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmod, chown, lstat, mkdir, readdir, readFile, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  AlreadyExistsError,
  ConflictError,
  CorruptRecordError,
  NotFoundError,
  PermanentLockError,
} from "../../src/election/lock.js";
import { encodeLeaseFile } from "../../src/locks/file/format.js";
import { FileMutex } from "../../src/locks/file/mutex.js";
import { currentProcess } from "../../src/locks/file/process.js";
import { defaultLockDir, FileLock, FileLockConfigError, IdentityClashError, SameIdentityHeldError } from "../../src/locks/file/index.js";
import { LATE_RELEASE_HOLDER } from "../../src/locks/file/lock.js";
import { FakeClock } from "../support/fake-clock.js";
import { Processes, record, startTimeOf, tempDir, waitFor } from "./file-helpers.js";

const isRoot = process.getuid?.() === 0;
const procs = new Processes();
let root: { dir: string; cleanup: () => Promise<void> };
let n = 0;

/** A fresh lock directory (not yet created) inside the test's private temp dir. */
function freshDir(): string {
  return join(root.dir, `d${++n}`);
}

before(async () => {
  root = await tempDir();
});

after(async () => {
  await procs.killAll();
  await root.cleanup();
});

describe("FileLock basics", () => {
  test("create writes client-go field names plus a leaderRun description of this process, and get returns it", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a", 0));
    const { record: got, raw } = await lock.get();
    assert.equal(got.holderIdentity, "a");
    assert.equal(got.leaderTransitions, 0);
    assert.equal(raw, await readFile(join(dir, "job"), "utf8"));
    const json = JSON.parse(raw) as Record<string, unknown>;
    assert.deepEqual(Object.keys(json), [
      "holderIdentity",
      "leaseDurationSeconds",
      "acquireTime",
      "renewTime",
      "leaderTransitions",
      "leaderRun",
    ]);
    assert.match(String(json.renewTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const leaderRun = json.leaderRun as Record<string, unknown>;
    const self = await currentProcess();
    assert.equal(leaderRun.pid, process.pid);
    assert.equal(leaderRun.bootId, self.bootId);
    assert.equal(leaderRun.pidNamespace, self.pidNamespace);
    assert.equal(typeof leaderRun.startTime, "number");
    assert.equal(leaderRun.childPgid, undefined);
    assert.equal(lock.describe(), join(dir, "job"));
    assert.equal(lock.identity(), "a");
  });

  test("the lock directory is created with mode 0700", async () => {
    const dir = join(freshDir(), "nested");
    const lock = new FileLock({ name: "job", identity: "a", dir });
    // Reading creates nothing (a mistyped `status --lock file:` must not leave directories behind)…
    await assert.rejects(lock.get(), NotFoundError);
    await assert.rejects(lstat(dir), /ENOENT/);
    // …the first write does.
    await lock.create(record("a"));
    assert.equal((await lstat(dir)).mode & 0o777, 0o700);
  });

  test("create fails with AlreadyExistsError when the lease file exists", async () => {
    const dir = freshDir();
    await new FileLock({ name: "job", identity: "a", dir }).create(record("a"));
    await assert.rejects(new FileLock({ name: "job", identity: "b", dir }).create(record("b")), AlreadyExistsError);
  });

  test("get and update reject with NotFoundError when the lease file is missing", async () => {
    const lock = new FileLock({ name: "job", identity: "a", dir: freshDir() });
    await assert.rejects(lock.get(), (err: Error) => err instanceof NotFoundError && err.message.includes("does not exist"));
    await assert.rejects(lock.update(record("a")), NotFoundError);
    await assert.rejects(lock.get(), (err: Error) => err instanceof NotFoundError && err.message.includes("job"));
  });

  test("update is a compare-and-swap: it fails with ConflictError after another instance wrote", async () => {
    const dir = freshDir();
    const a = new FileLock({ name: "job", identity: "a", dir });
    const b = new FileLock({ name: "job", identity: "b", dir });
    await a.create(record("a", 0));
    await b.get();
    await b.update(record("b", 1));
    await assert.rejects(a.update(record("a", 1)), ConflictError);
    assert.equal((await b.get()).record.holderIdentity, "b", "a failed CAS writes nothing");
    await a.get();
    await a.update(record("a", 2));
    await assert.rejects(b.update(record("b", 2)), ConflictError);
    // Our own writes keep the CAS base current: consecutive updates succeed.
    await a.update(record("a", 2));
    await a.update(record("a", 2));
    assert.equal((await a.get()).record.holderIdentity, "a");
  });

  test("update without a previous read is a conflict", async () => {
    const dir = freshDir();
    await new FileLock({ name: "job", identity: "a", dir }).create(record("a"));
    await assert.rejects(new FileLock({ name: "job", identity: "b", dir }).update(record("b")), ConflictError);
  });

  test("of many instances racing to update the same version exactly one wins", async () => {
    const dir = freshDir();
    await new FileLock({ name: "job", identity: "seed", dir }).create(record("seed", 0));
    const locks = Array.from({ length: 8 }, (_, i) => new FileLock({ name: "job", identity: `p${i}`, dir }));
    for (let round = 1; round <= 5; round++) {
      await Promise.all(locks.map((l) => l.get()));
      const results = await Promise.allSettled(locks.map((l) => l.update(record(l.identity(), round))));
      const won = results.filter((r) => r.status === "fulfilled");
      assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results.map((r) => r.status))}`);
      for (const r of results) if (r.status === "rejected") assert.ok(r.reason instanceof ConflictError);
    }
  });

  test("lease names that could leave the directory are refused", () => {
    for (const name of ["", "../x", "a/b", "..", ".", ".hidden", "a..b", "a~b", "x".repeat(201), "a b"]) {
      assert.throws(() => new FileLock({ name, identity: "a", dir: freshDir() }), FileLockConfigError, name);
    }
    assert.doesNotThrow(() => new FileLock({ name: "my-job_1.v2", identity: "a", dir: freshDir() }));
  });

  test("the default directory depends only on the user: cron (no XDG_RUNTIME_DIR, no TMPDIR) and a login shell share it", async () => {
    const expected = `/tmp/leader-run-${process.getuid?.()}`;
    const xdg = join(root.dir, "xdg");
    await mkdir(xdg, { mode: 0o700 });
    const saved = { XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR, TMPDIR: process.env.TMPDIR };
    const dirs: string[] = [];
    try {
      // A login shell: both set, to usable directories of ours.
      process.env.XDG_RUNTIME_DIR = xdg;
      process.env.TMPDIR = root.dir;
      dirs.push(defaultLockDir(), new FileLock({ name: "job", identity: "a" }).dir);
      // cron: neither set.
      delete process.env.XDG_RUNTIME_DIR;
      delete process.env.TMPDIR;
      dirs.push(defaultLockDir(), new FileLock({ name: "job", identity: "a" }).dir);
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    assert.deepEqual(dirs, [expected, expected, expected, expected]);
  });
});

describe("FileLock refuses unsafe locations", () => {
  const permanent = (pattern: RegExp) => (err: Error) => err instanceof PermanentLockError && pattern.test(err.message) && !err.message.includes("\n");

  test("a lock directory that is a symlink", async () => {
    const real = freshDir();
    await mkdir(real, { mode: 0o700 });
    const link = freshDir();
    await symlink(real, link);
    await assert.rejects(new FileLock({ name: "job", identity: "a", dir: link }).get(), permanent(/symlink.*--lock file:/));
  });

  test("a lock directory writable by group or others", async () => {
    const dir = freshDir();
    await mkdir(dir);
    await chmod(dir, 0o777);
    await assert.rejects(new FileLock({ name: "job", identity: "a", dir }).get(), permanent(/writable by group or others \(mode 0777\).*chmod go-w/));
  });

  test("a lock directory owned by another user", { skip: !isRoot && "needs root to chown" }, async () => {
    const dir = freshDir();
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, 65534, 65534);
    await assert.rejects(new FileLock({ name: "job", identity: "a", dir }).get(), permanent(/owned by uid 65534/));
  });

  test("a lease file that is a symlink, writable by others, owned by another user, or not a file", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a"));
    const other = new FileLock({ name: "other", identity: "a", dir });
    await other.create(record("a"));

    await symlink(join(dir, "other"), join(dir, "linked"));
    const linked = new FileLock({ name: "linked", identity: "a", dir });
    await assert.rejects(linked.get(), permanent(/lease file .*linked is a symlink/));
    await assert.rejects(linked.update(record("a")), PermanentLockError);

    await chmod(join(dir, "job"), 0o666);
    await assert.rejects(lock.get(), permanent(/writable by group or others/));
    await chmod(join(dir, "job"), 0o644);
    await lock.get();

    if (isRoot) {
      await chown(join(dir, "job"), 65534, 65534);
      await assert.rejects(lock.get(), permanent(/owned by uid 65534/));
    }

    await mkdir(join(dir, "adir"), { mode: 0o700 });
    await assert.rejects(new FileLock({ name: "adir", identity: "a", dir }).get(), permanent(/not a regular file/));
  });
});

describe("corrupt lease files", () => {
  test("get names the file and the problem, and nobody takes over before a whole lease duration", async () => {
    const dir = freshDir();
    const clock = new FakeClock();
    const lock = new FileLock({ name: "job", identity: "a", dir, clock, leaseDurationMs: 15_000 });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const truncated = '{\n  "holderIdentity": "old",\n  "leaseDurationSeconds": 15,\n  "leaderTransitions": 7,\n  "acq';
    await writeFile(join(dir, "job"), truncated, { mode: 0o644 });

    const corrupt = (pattern: RegExp) => (err: Error) =>
      err instanceof CorruptRecordError && err.message.includes(join(dir, "job")) && pattern.test(err.message);
    await assert.rejects(lock.get(), corrupt(/not valid JSON.*15\.0s left/));
    await assert.rejects(lock.update(record("a")), ConflictError, "an unreadable file is never overwritten early");
    await clock.advance(14_900);
    await assert.rejects(lock.get(), corrupt(/0\.1s left/));

    // Any change restarts the wait: somebody may be writing it.
    await writeFile(join(dir, "job"), truncated + "x");
    await assert.rejects(lock.get(), corrupt(/15\.0s left/));
    await clock.advance(10_000);
    await assert.rejects(lock.get(), corrupt(/5\.0s left/));

    // Another observer starts its own wait.
    const other = new FileLock({ name: "job", identity: "b", dir, clock, leaseDurationMs: 15_000 });
    await assert.rejects(other.get(), corrupt(/15\.0s left/));

    await clock.advance(5_000);
    const { record: got, raw } = await lock.get();
    assert.equal(got.holderIdentity, "", "after a whole lease duration the file may be overwritten");
    assert.equal(got.leaderTransitions, 7, "the term is salvaged so fencing tokens keep increasing");
    assert.equal(raw, truncated + "x");
    await lock.update(record("a", 8));
    assert.equal((await other.get().catch((e: Error) => e)) instanceof Error, false);
    assert.equal((await other.get()).record.holderIdentity, "a");
  });

  test("wrong types and an empty file are reported as corrupt", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, clock: new FakeClock() });
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const cases: Array<[string, RegExp]> = [
      ["", /empty/],
      ['{"holderIdentity": 5}', /holderIdentity must be a string/],
      ['{"holderIdentity": "x", "leaderTransitions": -1}', /leaderTransitions/],
      ['{"holderIdentity": "x", "renewTime": "yesterday"}', /renewTime/],
      ['{"holderIdentity": "x", "leaderRun": {"pid": "1"}}', /leaderRun\.pid/],
      ['{"holderIdentity": "x", "leaderRun": {"pid": 10, "childPgid": 1}}', /leaderRun\.childPgid/],
      ["[1,2]", /JSON object/],
    ];
    for (const [content, pattern] of cases) {
      await writeFile(join(dir, "job"), content);
      await assert.rejects(lock.get(), (err: Error) => err instanceof CorruptRecordError && pattern.test(err.message), content);
    }
  });
});

/** Writes a record naming `pid` (on this host unless overridden) as the holder process. */
async function writeHeldBy(dir: string, pid: number, extra: Record<string, unknown> = {}, identity = "dead"): Promise<void> {
  const self = await currentProcess();
  const holder = { ...self, pid, startTime: "startTime" in extra ? (extra.startTime as number) : await startTimeOf(pid), ...extra };
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, "job"), encodeLeaseFile(record(identity, 3), holder), { mode: 0o644 });
}

describe("writes that landed late (after their writer's landBy)", () => {
  // A rename that lands after its critical section could have been broken (abandoned at its bound on
  // a hung file system, or delayed by a pause) may have replaced a newer leader's record: nobody may
  // count it, neither as a dead holder's (taken over at once) nor, by its writer, as its own.
  const past = (): number => Date.now() - 60_000;
  const future = (): number => Date.now() + 60_000;
  /** Rewrites lease "job" in `dir` with the record and writer token our lock wrote there, due by `landBy`. */
  const landOurRecord = async (dir: string, landBy: number): Promise<void> => {
    const path = join(dir, "job");
    const mine = JSON.parse(await readFile(path, "utf8")) as { leaderRun: { writer: string } };
    await writeFile(path, encodeLeaseFile(record("a"), { ...(await currentProcess()), writer: mine.leaderRun.writer, landBy }), { mode: 0o644 });
  };

  test("a dead holder's record that landed late is not taken over at once; one that landed in time is", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const holder = procs.sleeper();
    const pid = holder.pid!;
    const startTime = await startTimeOf(pid);
    await procs.kill(holder);
    const lock = new FileLock({ name: "job", identity: "a", dir, leaseDurationMs: 20_000 });

    await writeHeldBy(dir, pid, { startTime, landBy: future() });
    assert.equal((await lock.get()).record.holderIdentity, "", "in time: the dead holder's lease is free at once");

    await writeHeldBy(dir, pid, { startTime, landBy: past() });
    const { record: late } = await lock.get();
    assert.equal(late.holderIdentity, "dead", "landed late: held until it expires");
    assert.equal(late.leaseDurationSeconds, 20, "and for at least our lease duration");
  });

  test("a release that landed late is not free", async () => {
    const dir = freshDir();
    const self = await currentProcess();
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(join(dir, "job"), encodeLeaseFile(record("", 3, 1), { ...self, writer: "gone", landBy: past() }), { mode: 0o644 });
    const lock = new FileLock({ name: "job", identity: "a", dir, leaseDurationMs: 5_000 });
    const { record: got } = await lock.get();
    assert.equal(got.holderIdentity, LATE_RELEASE_HOLDER);
    assert.equal(got.leaseDurationSeconds, 5);
    assert.equal(got.leaderTransitions, 3, "the term still counts");

    await writeFile(join(dir, "job"), encodeLeaseFile(record("", 3, 1), { ...self, writer: "gone", landBy: future() }), { mode: 0o644 });
    assert.equal((await lock.get()).record.holderIdentity, "", "a release that landed in time is free");
  });

  test("our own record that landed late is not ours: the writer waits it out like anyone", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, leaseDurationMs: 60_000 });
    await lock.create(record("a"));
    // The same bytes our writer produced, landing now but due a minute ago (an abandoned rename).
    await landOurRecord(dir, past());
    await lock.get();
    await assert.rejects(lock.update(record("a", 2)), (err: Error) => err instanceof SameIdentityHeldError && /landed .* after its deadline/.test(err.message));

    // In time, the same bytes are ours.
    await landOurRecord(dir, future());
    await lock.get();
    await lock.update(record("a", 2));
  });

  test("a leader's own write that landed in time stays its own when something later changes the file's ctime (chmod, touch, xattrs)", async () => {
    const dir = freshDir();
    // landBy = the lock file's mtime + 500 ms + 1 s: any ctime change after that looks like a late landing.
    const lock = new FileLock({ name: "job", identity: "a", dir, criticalSectionStaleMs: 1_000, fsTimeoutMs: 1_000 });
    await lock.create(record("a"));
    await lock.get();
    await new Promise((r) => setTimeout(r, 2_000));
    // An operator (or a backup tool, a relabel) touches the inode's metadata; the bytes are ours as written.
    await chmod(join(dir, "job"), 0o644);
    await lock.get();
    await lock.update(record("a", 1)); // the leader's renewal: must not be refused
    await lock.close();
  });

  test("a record of ours that landed late is not released as ours: the release would free the lease it may have replaced", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, leaseDurationMs: 60_000 });
    await lock.create(record("a"));
    // Our abandoned renewal, landing now over a breaker's record.
    await landOurRecord(dir, past());
    await lock.get();
    // What the elector's release writes when the record names us and matches a write of ours.
    await lock.update(record("", 1, 1)).catch(() => undefined);
    const other = new FileLock({ name: "job", identity: "b", dir, leaseDurationMs: 60_000 });
    const { record: seen } = await other.get();
    assert.notEqual(seen.holderIdentity, "", "the lease must not be free at once");
    await other.close();
    await lock.close();
  });

  test("a late record stops counting as late a lease duration after it landed: a released lease whose ctime moved is not held for good", async () => {
    const dir = freshDir();
    const releaser = new FileLock({ name: "job", identity: "a", dir, criticalSectionStaleMs: 1_000, fsTimeoutMs: 1_000, leaseDurationMs: 1_000 });
    await releaser.create(record("a", 1, 1));
    await releaser.get();
    await releaser.update(record("", 1, 1));
    await releaser.close();
    await new Promise((r) => setTimeout(r, 2_000));
    // Something touches the released file's metadata (chmod -R, chown -R, touch, a relabel) long after
    // it landed: it now reads as a release that landed late, held until unchanged for a lease duration.
    await chmod(join(dir, "job"), 0o644);
    const first = new FileLock({ name: "job", identity: "b", dir, leaseDurationMs: 1_000 });
    assert.equal((await first.get()).record.holderIdentity, LATE_RELEASE_HOLDER);
    await first.close();
    await new Promise((r) => setTimeout(r, 1_500));
    // A process that looks only now (every --no-wait cron run is one) saw it for the first time: before
    // the fix each such process waited a lease duration from its own first look, so none ever took it.
    const later = new FileLock({ name: "job", identity: "c", dir, leaseDurationMs: 1_000 });
    assert.equal((await later.get()).record.holderIdentity, "", "a lease duration after it landed, the release is free");
    await later.close();
  });

  test("landBy never lies beyond the break age other processes honour (a lock file may ask for at most 65 s)", async () => {
    const dir = freshDir();
    // A renew deadline of two minutes: the commit bound alone is longer than a breaker waits.
    const lock = new FileLock({ name: "job", identity: "a", dir, fsTimeoutMs: 120_000 });
    const before = Date.now();
    await lock.create(record("a"));
    const { leaderRun } = JSON.parse(await readFile(join(dir, "job"), "utf8")) as { leaderRun: { landBy: number } };
    // A breaker with a short renew deadline breaks the section 65 s after its mtime; a rename landing
    // after that must read as late (landBy + 250 ms before the break).
    assert.ok(leaderRun.landBy - before <= 65_000 - 250, `landBy is ${leaderRun.landBy - before}ms after the start`);
    await lock.close();
  });

  test("every write names its landBy, within the critical section's bound", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, criticalSectionStaleMs: 4_000, fsTimeoutMs: 1_500 });
    const before = Date.now();
    await lock.create(record("a"));
    const { leaderRun } = JSON.parse(await readFile(join(dir, "job"), "utf8")) as { leaderRun: { landBy: number } };
    assert.ok(leaderRun.landBy >= before + 2_000 + 1_500 - 50, `landBy ${leaderRun.landBy - before}ms after the start`);
    assert.ok(leaderRun.landBy <= Date.now() + 2_000 + 1_500 + 50, `landBy ${leaderRun.landBy - before}ms after the start`);
  });

  test("a breaker waits for the holder's own, longer break age (a longer commit bound than its own)", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, criticalSectionStaleMs: 1_000, fsTimeoutMs: 200 });
    await lock.create(record("a"));
    // The holder's section may last 3 s (its renew deadline is longer than ours).
    await writeFile(join(dir, ".job~lock"), JSON.stringify({ ...(await currentProcess()), token: "long-bound", breakAfterMs: 3_000 }), { mode: 0o600 });
    const started = Date.now();
    await lock.update(record("a"));
    const took = Date.now() - started;
    assert.ok(took >= 3_000 - 100, `broke the holder's section after ${took}ms, before its own break age`);
    assert.ok(took < 15_000, `took ${took}ms`);
  });
});

describe("dead-holder detection", () => {
  test("a holder process that is gone shows as released, and the CAS still applies to the real file", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const holder = procs.sleeper();
    await writeHeldBy(dir, holder.pid!);
    const lock = new FileLock({ name: "job", identity: "a", dir });
    assert.equal((await lock.get()).record.holderIdentity, "dead", "held while the holder runs");

    await procs.kill(holder);
    const { record: got, raw } = await lock.get();
    assert.equal(got.holderIdentity, "", "released once the holder is gone");
    assert.equal(got.leaderTransitions, 3);
    assert.equal(raw, await readFile(join(dir, "job"), "utf8"), "raw is the real file content");
    await lock.update(record("a", 4));
    assert.equal((await lock.get()).record.holderIdentity, "a");
  });

  test("a holder's pid reused by another process (start time differs) counts as gone", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const other = procs.sleeper();
    await writeHeldBy(dir, other.pid!, { startTime: (await startTimeOf(other.pid!)) + 1 });
    assert.equal((await new FileLock({ name: "job", identity: "a", dir }).get()).record.holderIdentity, "");
  });

  test("a live member of the recorded child process group keeps the lease held", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const holder = procs.sleeper();
    const child = procs.sleeper(true);
    await writeHeldBy(dir, holder.pid!, { childPgid: child.pid! });
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await procs.kill(holder);
    assert.equal((await lock.get()).record.holderIdentity, "dead", "held while the child's group lives");
    await procs.kill(child);
    assert.equal((await lock.get()).record.holderIdentity, "", "released once the group is gone");
  });

  test("a dead holder on another host or pid namespace, or without /proc data, is left to expire", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const lock = (dir: string) => new FileLock({ name: "job", identity: "a", dir });
    for (const extra of [{ bootId: "another-host" }, { pidNamespace: "pid:[1]" }, { bootId: null }, { pidNamespace: null }]) {
      const dir = freshDir();
      const holder = procs.sleeper();
      await writeHeldBy(dir, holder.pid!, extra);
      await procs.kill(holder);
      assert.equal((await lock(dir).get()).record.holderIdentity, "dead", JSON.stringify(extra));
    }
    // No leaderRun at all (a foreign writer): same.
    const dir = freshDir();
    await mkdir(dir, { mode: 0o700 });
    await writeFile(join(dir, "job"), JSON.stringify({ holderIdentity: "x", leaseDurationSeconds: 15, leaderTransitions: 1 }));
    assert.equal((await lock(dir).get()).record.holderIdentity, "x");
  });

  test("a dead holder's watchdog keeps the lease held until it exits too", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const holder = procs.sleeper();
    const watchdog = procs.sleeper(true);
    await writeHeldBy(dir, holder.pid!, { watchdog: { pid: watchdog.pid!, startTime: await startTimeOf(watchdog.pid!) } });
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await procs.kill(holder);
    assert.equal((await lock.get()).record.holderIdentity, "dead", "held while the watchdog runs");
    await procs.kill(watchdog);
    assert.equal((await lock.get()).record.holderIdentity, "", "released once the watchdog is gone");
  });

  test("a child process group left with only zombies no longer holds the lease", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    // `setsid sleep 0` leads its own group and exits; its parent (exec'ed into sleep) never reaps it.
    const parent = procs.track(spawn("sh", ["-c", "setsid sleep 0 & echo $!; exec sleep 1000"], { stdio: ["ignore", "pipe", "ignore"] }));
    let out = "";
    parent.stdout?.on("data", (c: Buffer) => (out += c.toString()));
    await waitFor(() => out.includes("\n"), 10_000, "the zombie's pid");
    const zombie = Number(out.trim());
    await waitFor(async () => (await readFile(`/proc/${zombie}/stat`, "utf8")).includes(") Z "), 10_000, "the group leader to become a zombie");
    assert.doesNotThrow(() => process.kill(-zombie, 0), "kill() still reports the zombie's group");
    const holder = procs.sleeper();
    await writeHeldBy(dir, holder.pid!, { childPgid: zombie });
    await procs.kill(holder);
    assert.equal((await new FileLock({ name: "job", identity: "a", dir }).get()).record.holderIdentity, "");
    await procs.kill(parent);
  });

  const leaderRunOf = async (dir: string) =>
    (JSON.parse(await readFile(join(dir, "job"), "utf8")) as { leaderRun: Record<string, unknown> }).leaderRun;

  test("a write on behalf of the holder (step-down's hand-over request) keeps the holder's process facts", async () => {
    // Otherwise the file names the short-lived step-down process as the holder's process, and once it
    // exits a standby on this host takes over while the leader's child is still stopping.
    const dir = freshDir();
    const leader = new FileLock({ name: "job", identity: "a", dir });
    await leader.create(record("a", 5));
    await leader.setGuardedProcessGroup(4242);
    const before = await leaderRunOf(dir);
    const requester = new FileLock({ name: "job", identity: "step-down-b", dir });
    const { record: current } = await requester.get();
    await requester.update({ ...current, preferredHolder: "step-down-b" });
    const after = JSON.parse(await readFile(join(dir, "job"), "utf8")) as Record<string, unknown>;
    assert.equal(after.preferredHolder, "step-down-b");
    // landBy belongs to each write (the requester's critical section), not to the holder.
    const facts = (v: unknown): Record<string, unknown> => {
      const { landBy: _landBy, ...rest } = v as Record<string, unknown>;
      return rest;
    };
    assert.deepEqual(facts(after.leaderRun), facts(before), "the leader's pid, writer and child group stay");
    await requester.close();
    await leader.close();
  });

  test("setGuardedProcessGroup writes the group into our current record at once, changing nothing else", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a", 5));
    const before = JSON.parse(await readFile(join(dir, "job"), "utf8")) as Record<string, unknown>;
    assert.equal(await lock.setGuardedProcessGroup(4242), true);
    const after = JSON.parse(await readFile(join(dir, "job"), "utf8")) as Record<string, unknown>;
    assert.equal((after.leaderRun as Record<string, unknown>).childPgid, 4242);
    assert.deepEqual({ ...after, leaderRun: undefined }, { ...before, leaderRun: undefined }, "no renewal: the record is unchanged");
    assert.equal(await lock.setGuardedProcessGroup(4242), true, "again: nothing to write");

    // The CAS base moved with our own write: the elector's next fast-path update succeeds.
    await lock.update(record("a", 5));
    assert.equal((await leaderRunOf(dir)).childPgid, 4242, "and keeps naming the group");
    assert.equal(await lock.setGuardedProcessGroup(undefined), false, "forgetting is lazy");
    assert.equal((await leaderRunOf(dir)).childPgid, 4242);
    await lock.update(record("a", 5));
    assert.equal((await leaderRunOf(dir)).childPgid, undefined, "forgotten by the next write");

    assert.throws(() => lock.setGuardedProcessGroup(1), RangeError);
    assert.throws(() => lock.setGuardedProcessGroup(2.5), RangeError);
    assert.throws(() => lock.setGuardedProcessGroup(undefined, { watchdogPid: 0 }), RangeError);
  });

  test("one FileLock's overlapping writes queue for each other instead of contending for the mutex file", async () => {
    // A leader's first renewal and the writes naming its guard and child group overlap at every start;
    // polling the mutex file against ourselves cost a 2 → 50 ms backoff before the child (issue #13).
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a", 5));
    const mutex = (lock as unknown as { mutex: FileMutex }).mutex;
    const acquire = mutex.acquire.bind(mutex);
    let inside = 0;
    let most = 0;
    mutex.acquire = async (signal) => {
      inside++;
      most = Math.max(most, inside);
      const handle = await acquire(signal);
      const release = handle.release.bind(handle);
      handle.release = async () => {
        try {
          await release();
        } finally {
          inside--;
        }
      };
      return handle;
    };
    const results = await Promise.all([lock.update(record("a", 5)), lock.setGuardedProcessGroup(4242, { watchdogPid: process.pid }), lock.update(record("a", 5))]);
    assert.equal(results[1], true);
    assert.equal(most, 1, "at most one of this object's critical sections asks for the mutex at a time");
    assert.equal((await leaderRunOf(dir)).childPgid, 4242, "and none of the writes lost the group");
    await lock.close();
  });

  test("setGuardedProcessGroup writes nothing when the file is not our current record, and the next write carries the group", async () => {
    const dir = freshDir();
    const a = new FileLock({ name: "job", identity: "a", dir });
    const b = new FileLock({ name: "job", identity: "b", dir });
    assert.equal(await a.setGuardedProcessGroup(4242), false, "no file yet");
    await a.create(record("a"));
    await a.update(record(""));
    const released = await readFile(join(dir, "job"), "utf8");
    assert.equal(await a.setGuardedProcessGroup(4243), false, "a released record names no group");
    assert.equal(await readFile(join(dir, "job"), "utf8"), released);

    await b.get();
    await b.update(record("b"));
    const theirs = await readFile(join(dir, "job"), "utf8");
    assert.equal(await a.setGuardedProcessGroup(4244), false, "somebody else wrote since");
    assert.equal(await readFile(join(dir, "job"), "utf8"), theirs);

    await b.update(record(""));
    await a.get();
    await a.update(record("a"));
    assert.equal((await leaderRunOf(dir)).childPgid, 4244, "our next record names the group");
    await a.update(record(""));
    await a.update(record("a"));
    assert.equal((await leaderRunOf(dir)).childPgid, undefined, "a release forgets it");
  });

  test("setGuardedProcessGroup racing with renewals and reads neither makes them conflict nor loses the group", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a"));
    for (let i = 0; i < 12; i++) {
      const pgid = 1000 + i;
      await lock.setGuardedProcessGroup(undefined);
      // Renewal (fast path: no read) and a read, each raced against the guard write, in varying order.
      const calls: Array<Promise<unknown>> = [lock.update(record("a")), lock.setGuardedProcessGroup(pgid), lock.get()];
      if (i % 2 === 1) calls.reverse();
      await Promise.all(calls);
      assert.equal((await leaderRunOf(dir)).childPgid, pgid, `round ${i}`);
      await lock.update(record("a"));
      assert.equal((await leaderRunOf(dir)).childPgid, pgid, `round ${i}: the next renewal succeeds and keeps it`);
    }
  });

  test("deferWrite: a standby's prepared group is not written into its old record, only into its acquiring write", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a"));
    const path = join(dir, "job");
    const before = await readFile(path, "utf8");
    // Our record of an earlier term is still on disk: rewriting it would restart other standbys' wait.
    assert.equal(await lock.setGuardedProcessGroup(4343, { deferWrite: true }), false);
    assert.equal(await readFile(path, "utf8"), before, "nothing written");
    await lock.get();
    await lock.update(record("a", 2));
    const after = JSON.parse(await readFile(path, "utf8")) as { leaderRun: { childPgid?: number } };
    assert.equal(after.leaderRun.childPgid, 4343, "the next write of ours names it");
  });

  test("setGuardedProcessGroup records the watchdog with its start time, before any child exists", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const watchdog = procs.sleeper(true);
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a"));
    assert.equal(await lock.setGuardedProcessGroup(undefined, { watchdogPid: watchdog.pid! }), true);
    let leaderRun = await leaderRunOf(dir);
    assert.equal(leaderRun.watchdogPid, watchdog.pid);
    assert.equal(leaderRun.watchdogStartTime, await startTimeOf(watchdog.pid!));
    assert.equal(leaderRun.childPgid, undefined);
    await lock.update(record(""));
    assert.equal((await leaderRunOf(dir)).watchdogPid, undefined, "a released record names nobody");
    await lock.update(record("a"));
    leaderRun = await leaderRunOf(dir);
    assert.equal(leaderRun.watchdogPid, watchdog.pid, "the watchdog outlives a term: it is remembered");
  });
});

describe("one identity, one process", () => {
  const clash = (pid: number) => (err: Error) =>
    err instanceof IdentityClashError &&
    err instanceof PermanentLockError &&
    /^lease "job" \(.*job\) is held by identity "a" in another live process \(pid (\d+)\); --identity must be unique per process$/.test(err.message) &&
    err.message.includes(`(pid ${pid})`);

  test("a record with our identity written by another live process on this host is refused with a permanent error", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const other = procs.sleeper();
    await writeHeldBy(dir, other.pid!, {}, "a");
    const before = await readFile(join(dir, "job"), "utf8");
    const lock = new FileLock({ name: "job", identity: "a", dir });
    assert.equal((await lock.get()).record.holderIdentity, "a", "reading is fine (status)");
    await assert.rejects(lock.update(record("a", 4)), clash(other.pid!));
    assert.equal(await readFile(join(dir, "job"), "utf8"), before, "nothing written");
    // `leader-run release --identity a` from another process must still work.
    await lock.update(record("", 3));
    assert.equal((await lock.get()).record.holderIdentity, "");
  });

  test("two live FileLocks of one process with one identity are two candidates: the second is refused", async () => {
    const dir = freshDir();
    const first = new FileLock({ name: "job", identity: "a", dir });
    const second = new FileLock({ name: "job", identity: "a", dir });
    await first.create(record("a", 1));
    await second.get();
    await assert.rejects(second.update(record("a", 1)), (err: Error) => err instanceof IdentityClashError && /another live process/.test(err.message));
    await first.update(record("a", 1));
    await first.close();
    await second.get();
    await second.update(record("a", 1));
    await second.close();
  });

  test("a record with our identity from a process that is gone, with everything it ran, is acquired at once (a restart)", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const previous = procs.sleeper();
    await writeHeldBy(dir, previous.pid!, {}, "a");
    await procs.kill(previous);
    const lock = new FileLock({ name: "job", identity: "a", dir });
    assert.equal((await lock.get()).record.holderIdentity, "");
    await lock.update(record("a", 4));
    // Also when read as ours: a closed FileLock of this process wrote it (a restart within the process).
    await lock.close();
    const again = new FileLock({ name: "job", identity: "a", dir });
    assert.equal((await again.get()).record.holderIdentity, "a");
    await again.update(record("a", 4));
  });

  test("a record with our identity from a gone process whose child group still runs waits for the group or the lease expiry", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const held = (err: Error) =>
      err instanceof SameIdentityHeldError &&
      err instanceof ConflictError &&
      /held by identity "a" from an earlier process \(pid \d+\) that is gone, but its child's process group \d+ still runs; .*\(15\.0s left\)/.test(err.message);
    for (const ending of ["group killed", "lease expired"]) {
      const dir = freshDir();
      const clock = new FakeClock();
      const previous = procs.sleeper();
      const group = procs.sleeper(true);
      await writeHeldBy(dir, previous.pid!, { childPgid: group.pid! }, "a");
      await procs.kill(previous);
      const lock = new FileLock({ name: "job", identity: "a", dir, clock, leaseDurationMs: 10_000 });
      assert.equal((await lock.get()).record.holderIdentity, "a");
      await assert.rejects(lock.update(record("a", 4)), held, ending);
      if (ending === "group killed") {
        await procs.kill(group);
        assert.equal((await lock.get()).record.holderIdentity, "");
      } else {
        await clock.advance(14_000);
        await lock.get();
        await assert.rejects(lock.update(record("a", 4)), SameIdentityHeldError, "the record's 15 s lease, not ours");
        await clock.advance(1_000);
        await lock.get();
      }
      await lock.update(record("a", 4));
      assert.equal((await lock.get()).record.holderIdentity, "a", ending);
    }
  });

  test("a record with our identity from a process this host cannot inspect waits for the lease to expire", async () => {
    const dir = freshDir();
    await mkdir(dir, { mode: 0o700 });
    const self = await currentProcess();
    await writeFile(join(dir, "job"), encodeLeaseFile(record("a", 3), { ...self, bootId: "another-host", pid: 12345 }), { mode: 0o644 });
    const clock = new FakeClock();
    const lock = new FileLock({ name: "job", identity: "a", dir, clock, leaseDurationMs: 15_000 });
    await lock.get();
    await assert.rejects(lock.update(record("a", 4)), /cannot inspect \(pid 12345 on .*\); waiting .*\(15\.0s left\)/);
    await clock.advance(15_000);
    await lock.get();
    await lock.update(record("a", 4));
  });
});

describe("crash safety of the critical section", () => {
  test("stray temp files and moved-aside lock files are cleaned up by the next write", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a"));
    const neighbour = new FileLock({ name: "job.x", identity: "a", dir });
    await neighbour.create(record("a"));
    await writeFile(join(dir, ".job~tmp-999999-abcdef"), '{"holderIdentity": "half-writ');
    await writeFile(join(dir, ".job~lock.broken-123456"), "");
    await writeFile(join(dir, ".job.x~tmp-999999-abcdef"), "neighbour's");
    await lock.get();
    await lock.update(record("a"));
    const left = (await readdir(dir)).sort();
    assert.deepEqual(left, [".job.x~tmp-999999-abcdef", "job", "job.x"], "only this lease's strays are removed");
  });

  test("a critical-section lock left by a dead process is broken at once", async (t) => {
    if ((await currentProcess()).bootId === null) return t.skip("/proc unavailable");
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, criticalSectionStaleMs: 60_000 });
    await lock.create(record("a"));
    const dead = procs.sleeper();
    const info = { ...(await currentProcess()), pid: dead.pid!, startTime: await startTimeOf(dead.pid!), token: "x" };
    await procs.kill(dead);
    await writeFile(join(dir, ".job~lock"), JSON.stringify(info), { mode: 0o600 });
    const started = Date.now();
    await lock.update(record("a"));
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started}ms`);
  });

  test("a critical-section lock held too long (hung or unknown holder) is broken after the stale period", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, criticalSectionStaleMs: 1_000, fsTimeoutMs: 500 });
    await lock.create(record("a"));
    // A live holder (this very process) that never lets go; and an empty lock file, as after a crash
    // between creating and writing it.
    for (const content of [JSON.stringify({ ...(await currentProcess()), token: "hung" }), ""]) {
      await writeFile(join(dir, ".job~lock"), content, { mode: 0o600 });
      const started = Date.now();
      await lock.update(record("a"));
      const took = Date.now() - started;
      assert.ok(took >= 900, `waited only ${took}ms for a live holder`);
      assert.ok(took < 8_000, `took ${took}ms`);
    }
    // A lock file older than the stale period goes at once.
    await writeFile(join(dir, ".job~lock"), "");
    const old = new Date(Date.now() - 60_000);
    await utimes(join(dir, ".job~lock"), old, old);
    const started = Date.now();
    await lock.update(record("a"));
    assert.ok(Date.now() - started < 900);
  });

  test("the critical section is not broken by age while its holder's rename may still be running (its file-system bound)", async () => {
    // A holder verifies at up to staleMs/2 and its rename may then take up to fsTimeoutMs: breaking the
    // section at staleMs would let a slow rename land over the breaker's record, and both would hold
    // the lease in the same term (found by review: a 5.5 s rename against a 5 s stale period).
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, criticalSectionStaleMs: 1_000, fsTimeoutMs: 3_000 });
    await lock.create(record("a"));
    await writeFile(join(dir, ".job~lock"), JSON.stringify({ ...(await currentProcess()), token: "slow-rename" }), { mode: 0o600 });
    const started = Date.now();
    await lock.update(record("a"));
    const took = Date.now() - started;
    assert.ok(took >= 500 + 3_000 - 100, `broke a section whose holder's rename could still land, after ${took}ms`);
    assert.ok(took < 15_000, `took ${took}ms`);
  });

  test("a writer whose critical-section lock was broken writes nothing", async () => {
    const dir = freshDir();
    await mkdir(dir, { mode: 0o700 });
    const mutex = new FileMutex(join(dir, ".m~lock"), { staleMs: 1_000 });
    const held = await mutex.acquire();
    await held.verify();
    await writeFile(join(dir, ".m~lock"), "somebody else");
    await assert.rejects(held.verify(), /broken by another process/);
    await held.release();
    assert.equal(await readFile(join(dir, ".m~lock"), "utf8"), "somebody else", "release leaves a foreign lock alone");
  });

  test("a waiter takes the critical section as soon as its holder releases it, not after its backoff", async () => {
    const dir = freshDir();
    await mkdir(dir, { mode: 0o700 });
    const path = join(dir, ".m~lock");
    const held = await new FileMutex(path).acquire();
    // A first wait of 5 s: a waiter that only slept its backoff would take it 2.5 s or more after the release.
    const waiter = new FileMutex(path, { retryMs: 5_000 });
    const waiting = waiter.acquire();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const releasedAt = performance.now();
    await held.release();
    const taken = await waiting;
    const took = performance.now() - releasedAt;
    await taken.release();
    assert.ok(took < 2_000, `the waiter took the section ${Math.round(took)}ms after its release`);
  });

  test("a waiter whose wait is aborted stops waiting at once and leaves the holder's lock alone", async () => {
    const dir = freshDir();
    await mkdir(dir, { mode: 0o700 });
    const path = join(dir, ".m~lock");
    const held = await new FileMutex(path).acquire();
    const abort = new AbortController();
    const waiting = new FileMutex(path, { retryMs: 5_000 }).acquire(abort.signal);
    await new Promise((resolve) => setTimeout(resolve, 200));
    const abortedAt = performance.now();
    abort.abort();
    await assert.rejects(waiting, { name: "AbortError" });
    assert.ok(performance.now() - abortedAt < 2_000);
    await held.verify();
    await held.release();
  });
});

describe("watch and abort", () => {
  test("watch fires when the lease is released, ignores other files, and stops on abort", async () => {
    const dir = freshDir();
    const holder = new FileLock({ name: "job", identity: "a", dir });
    const watcher = new FileLock({ name: "job", identity: "b", dir });
    await holder.create(record("a"));
    await holder.get();
    let calls = 0;
    const stop = new AbortController();
    watcher.watch(() => calls++, stop.signal);
    await new Promise((r) => setTimeout(r, 100));

    await new FileLock({ name: "unrelated", identity: "a", dir }).create(record("a"));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(calls, 0, "writes to other leases are filtered out");

    await holder.update(record(""));
    await waitFor(() => calls > 0, 5_000, "watch notification");

    stop.abort();
    await new Promise((r) => setTimeout(r, 100));
    const before = calls;
    await holder.update(record("a"));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(calls, before, "no notifications after abort");
  });

  test("a watch started before the lock directory exists still reports the first changes", async () => {
    const dir = join(freshDir(), "not-yet");
    const watcher = new FileLock({ name: "job", identity: "b", dir });
    let calls = 0;
    const stop = new AbortController();
    watcher.watch(() => calls++, stop.signal);
    // Another process creates the directory and the lease while the watch could not be set up yet.
    const holder = new FileLock({ name: "job", identity: "a", dir });
    await holder.create(record("a"));
    await waitFor(() => calls > 0, 5_000, "a notification once the directory exists");
    const seen = calls;
    await holder.get();
    await holder.update(record(""));
    await waitFor(() => calls > seen, 5_000, "the release is reported too");
    stop.abort();
  });

  test("close stops every watcher", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir });
    await lock.create(record("a"));
    let calls = 0;
    lock.watch(() => calls++, new AbortController().signal);
    await lock.close();
    await lock.update(record("a"));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(calls, 0);
  });

  test("calls reject promptly when their signal aborts, and an aborted update writes nothing", async () => {
    const dir = freshDir();
    const lock = new FileLock({ name: "job", identity: "a", dir, criticalSectionStaleMs: 30_000 });
    await lock.create(record("a", 1));
    await lock.get();
    await assert.rejects(lock.get(AbortSignal.abort()), { name: "AbortError" });

    // Someone sits in the critical section: the update waits, and gives up when told to.
    await writeFile(join(dir, ".job~lock"), JSON.stringify({ ...(await currentProcess()), token: "busy" }), { mode: 0o600 });
    const ac = new AbortController();
    const pending = lock.update(record("a", 99), ac.signal);
    setTimeout(() => ac.abort(new Error("gave up")), 200);
    const started = Date.now();
    await assert.rejects(pending, /gave up/);
    assert.ok(Date.now() - started < 2_000);
    await new Promise((r) => setTimeout(r, 300));
    const { record: got } = await lock.get();
    assert.equal(got.leaderTransitions, 1, "nothing was written");
  });
});
