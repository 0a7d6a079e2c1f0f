import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { main } from "../../src/cli/main.js";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import { FileLock } from "../../src/locks/file/index.js";

let dir = "";
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "leader-run-status-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, {
    env: {},
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, stdout, stderr };
}

function rec(holder: string, term: number, renewedAgoMs = 0, leaseDurationSeconds = 15): LeaderElectionRecord {
  const renew = new Date(Date.now() - renewedAgoMs);
  return { holderIdentity: holder, leaseDurationSeconds, acquireTime: new Date(renew.getTime() - 60_000), renewTime: renew, leaderTransitions: term };
}

/** Writes a record as `holder` would (this test process stands in for the holder's process). */
async function seed(name: string, record: LeaderElectionRecord): Promise<void> {
  const lock = new FileLock({ name, identity: record.holderIdentity || "seeder", dir });
  try {
    await lock.create(record);
  } finally {
    await lock.close();
  }
}

async function read(name: string): Promise<LeaderElectionRecord> {
  const lock = new FileLock({ name, identity: "reader", dir });
  try {
    return (await lock.get()).record;
  } finally {
    await lock.close();
  }
}

const lockArg = (): string[] => ["--lock", `file:${dir}`];

describe("leader-run status", () => {
  it("exits 3 for a lease that was never created", async () => {
    const r = await cli(["status", ...lockArg(), "--name", "never"]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /^lease:\s+never$/m);
    assert.match(r.stdout, /^state:\s+absent \(free, never created\)$/m);
    const j = await cli(["status", ...lockArg(), "--name", "never", "--output", "json"]);
    assert.equal(j.code, 3);
    assert.deepEqual(JSON.parse(j.stdout), {
      lease: "never",
      location: join(dir, "never"),
      state: "absent",
      live: false,
      holder: null,
      acquireTime: null,
      renewTime: null,
      expireTime: null,
      leaseDurationSeconds: null,
      term: null,
    });
  });

  it("exits 0 and shows holder, since, renewed, expiry, duration and term for a live lease", async () => {
    const record = rec("web-1_aaaa1111", 4);
    await seed("live", record);
    const r = await cli(["status", ...lockArg(), "--name", "live"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^state:\s+live \(held and renewed in time\)$/m);
    assert.match(r.stdout, /^holder:\s+web-1_aaaa1111$/m);
    // Rounded to the second: the time seeding and reading took (fsyncs) may add one, as for the next two.
    assert.match(r.stdout, /^since:\s+\S+Z \(1m[01]s ago\)$/m);
    assert.match(r.stdout, /^renewed:\s+\S+Z \((now|1s ago)\)$/m);
    assert.match(r.stdout, /^expires:\s+\S+Z \(in 1[45]s\)$/m);
    assert.match(r.stdout, /^duration:\s+15s$/m);
    assert.match(r.stdout, /^term:\s+4$/m);
    const j = JSON.parse((await cli(["status", ...lockArg(), "--name", "live", "--output", "json"])).stdout) as Record<string, unknown>;
    assert.equal(j.state, "live");
    assert.equal(j.live, true);
    assert.equal(j.holder, "web-1_aaaa1111");
    assert.equal(j.term, 4);
    assert.equal(j.leaseDurationSeconds, 15);
    assert.equal(j.renewTime, record.renewTime?.toISOString());
    assert.equal(j.expireTime, new Date((record.renewTime?.getTime() ?? 0) + 15_000).toISOString());
  });

  it("exits 3 when the holder stopped renewing longer than the lease duration ago", async () => {
    await seed("stale", rec("web-2_bbbb2222", 2, 60_000));
    const r = await cli(["status", ...lockArg(), "--name", "stale"]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /^state:\s+expired/m);
    assert.match(r.stdout, /^holder:\s+web-2_bbbb2222$/m);
  });

  it("derives the lease name from the command after --, as the run command does", async () => {
    await seed("node-cron-js", rec("web-3_cccc3333", 1));
    const r = await cli(["status", ...lockArg(), "--", "node", "cron.js"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^lease:\s+node-cron-js$/m);
  });
});

describe("leader-run release", () => {
  it("refuses to release someone else's lease without --force (exit 75) and leaves it alone", async () => {
    await seed("theirs", rec("web-4_dddd4444", 3));
    const r = await cli(["release", ...lockArg(), "--name", "theirs", "--identity", "me_00000000"]);
    assert.equal(r.code, 75);
    assert.equal(r.stderr, "leader-run: lease theirs is held by web-4_dddd4444, not me_00000000; nothing released (--force releases it anyway)\n");
    assert.equal((await read("theirs")).holderIdentity, "web-4_dddd4444");
  });

  it("refuses to release a live holder's lease, even naming its --identity, without --force (exit 75)", async () => {
    await seed("live-ours", rec("me_22222222", 2));
    const r = await cli(["release", ...lockArg(), "--name", "live-ours", "--identity", "me_22222222"]);
    assert.equal(r.code, 75);
    assert.match(r.stderr, /^leader-run: lease live-ours is held by me_22222222, which is still renewing it: .*--force if it is gone for good\n$/);
    assert.equal((await read("live-ours")).holderIdentity, "me_22222222");
    const json = await cli(["release", ...lockArg(), "--name", "live-ours", "--identity", "me_22222222", "--output", "json"]);
    assert.equal(json.code, 75);
    const out = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.equal(out.released, false);
    assert.equal(out.refused, true);
    assert.equal(out.holder, "me_22222222");
  });

  it("releases our own expired lease with client-go's released record, keeping the term", async () => {
    await seed("ours", rec("me_11111111", 5, 20_000));
    const before = Date.now();
    const r = await cli(["release", ...lockArg(), "--name", "ours", "--identity", "me_11111111"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "released lease ours (held by me_11111111, term 5)\n");
    const after = await read("ours");
    assert.equal(after.holderIdentity, "");
    assert.equal(after.leaseDurationSeconds, 1);
    assert.equal(after.leaderTransitions, 5);
    assert.ok((after.renewTime?.getTime() ?? 0) >= before - 1000);
    assert.equal(after.acquireTime?.getTime(), after.renewTime?.getTime());
    const s = await cli(["status", ...lockArg(), "--name", "ours"]);
    assert.equal(s.code, 3);
    assert.match(s.stdout, /^state:\s+released \(free\)$/m);
  });

  it("--force releases whoever holds it", async () => {
    await seed("forced", rec("web-5_eeee5555", 9));
    const r = await cli(["release", ...lockArg(), "--name", "forced", "--force", "--output", "json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { lease: "forced", location: join(dir, "forced"), released: true, previousHolder: "web-5_eeee5555", term: 9 });
    assert.match(r.stderr, /forcing the release of a live lease held by web-5_eeee5555: if its leader-run still runs/);
    assert.equal((await read("forced")).holderIdentity, "");
  });

  it("is a no-op (exit 0) when nobody holds the lease", async () => {
    const r = await cli(["release", ...lockArg(), "--name", "nobody", "--force"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "lease nobody is not held; nothing to release\n");
  });

  it("needs --identity or --force (exit 64) and opens nothing", async () => {
    const r = await cli(["release", "--lock", `file:${join(dir, "not-created")}`, "--name", "x"]);
    assert.equal(r.code, 64);
    assert.match(r.stderr, /^leader-run: release needs --identity/);
    assert.equal(existsSync(join(dir, "not-created")), false);
  });
});

