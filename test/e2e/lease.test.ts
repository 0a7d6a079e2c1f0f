import assert from "node:assert/strict";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { E2E, GRACE_MS, LEASE_MS, RENEW_DEADLINE_MS, marker, sleepers, useE2E, waitFor, type ChildEvent, type LeaderRunProcess } from "./support.js";

/**
 * The lease as seen from outside: not acquiring (--no-wait, --wait, --conflict-exit-code), losing it
 * (foreign holder, failed renewals, forced release), campaigning again, and `status` / `release`.
 */

let h: E2E;
useE2E((fresh) => (h = fresh));

/** Starts `identity` with the fixture child and waits until that child runs. */
async function leader(identity: string, extra: string[] = []): Promise<{ run: LeaderRunProcess; start: ChildEvent; marker: string }> {
  const m = marker();
  const run = h.run(identity, h.child(identity, m), extra);
  const start = await h.waitForChildEvent(`${identity}'s child to start`, (e) => e.kind === "start" && e.tag === identity);
  return { run, start, marker: m };
}

async function stopLine(start: ChildEvent): Promise<ChildEvent | undefined> {
  return (await h.childEvents()).find((e) => e.kind === "stop" && e.pid === start.pid);
}

/** A valid record of another holder, as another leader-run (on another host) would write it. */
function foreignRecord(holder: string, term: number, leaseDurationSeconds: number): string {
  const now = new Date().toISOString();
  return `${JSON.stringify({ holderIdentity: holder, leaseDurationSeconds, acquireTime: now, renewTime: now, leaderTransitions: term }, null, 2)}\n`;
}

describe("not acquiring the lease", () => {
  test("--no-wait exits 75 at once while another process leads, and --conflict-exit-code changes the code", async () => {
    const a = await leader("e2e-a");
    const noWait = h.run("e2e-b", h.child("e2e-b", marker()), ["--no-wait"]);
    const custom = h.run("e2e-c", h.child("e2e-c", marker()), ["--no-wait", "--conflict-exit-code", "3"]);
    assert.equal(await noWait.exitCode(), 75, `${noWait}`);
    assert.equal(await custom.exitCode(), 3, `${custom}`);
    assert.ok(noWait.logs().some((l) => l.event === "not_acquired" && l.holder === "e2e-a"), noWait.stderr);
    assert.deepEqual((await h.childEvents()).map((e) => e.tag), ["e2e-a"], "a standby started its child");
    assert.ok(a.run.running, "the leader was disturbed");
    a.run.signal("SIGTERM");
    assert.equal(await a.run.exitCode(), 0, `${a.run}`);
  });

  test("--wait 1s exits 75 after about a second while another process leads", async () => {
    const a = await leader("e2e-a");
    const started = performance.now();
    const waiting = h.run("e2e-b", h.child("e2e-b", marker()), ["--wait", "1s"]);
    assert.equal(await waiting.exitCode(), 75, `${waiting}`);
    const took = performance.now() - started;
    assert.ok(took >= 1000, `gave up after ${took.toFixed(0)} ms`);
    assert.deepEqual((await h.childEvents()).map((e) => e.tag), ["e2e-a"]);
    a.run.signal("SIGTERM");
    assert.equal(await a.run.exitCode(), 0, `${a.run}`);
  });

  test("of --no-wait runs started together, exactly one runs its command and the others exit 75", async () => {
    for (let round = 0; round < 2; round++) {
      // The winner (any of the three) holds the lease until the gate opens, and the test opens it only
      // once the other two have exited: however late a loser starts on a busy box, it finds the lease
      // held. A fixed run time would let a late loser acquire after the winner, exit 0 and fail the test.
      const gate = join(h.work, `gate-${round}`);
      const untilGate = ["sh", "-c", 'until [ -e "$1" ]; do sleep 0.05; done', "until-gate", gate];
      const runs = ["e2e-a", "e2e-b", "e2e-c"].map((id) => h.run(`${id}-${round}`, untilGate, ["--no-wait"]));
      // Two winners would both wait at the gate: then this wait times out, the gate opens anyway and
      // the codes show [0, 0, 75].
      await waitFor("two of the three to exit", () => runs.filter((r) => r.exitInfo !== undefined).length >= 2, 20_000).catch(() => undefined);
      await writeFile(gate, "");
      const codes = await Promise.all(runs.map((r) => r.exitCode()));
      assert.deepEqual(
        [...codes].sort((x, y) => (x ?? -1) - (y ?? -1)),
        [0, 75, 75],
        `round ${round}: ${runs.map((r) => r.toString()).join("\n")}`,
      );
    }
  });
});

describe("losing the lease", () => {
  test("another holder's record stops the child at once and exits 76, leaving that record alone", async () => {
    const a = await leader("e2e-a");
    const term = Number(a.start.fields.token);
    const intruder = foreignRecord("intruder", term + 1, 15);
    const wroteAt = Date.now();
    await h.replaceLeaseFile(intruder);
    assert.equal(await a.run.exitCode(), 76, `${a.run}`);
    const stop = await stopLine(a.start);
    assert.ok(stop, "the child was not stopped with its kill signal");
    assert.ok(stop.ms - wroteAt < RENEW_DEADLINE_MS, `the child stopped ${(stop.ms - wroteAt).toFixed(0)} ms after the takeover`);
    assert.deepEqual(sleepers(a.marker), []);
    assert.ok(a.run.logs().some((l) => l.event === "lost" && l.reason === "foreign_holder" && l.holder === "intruder"), a.run.stderr);
    assert.equal((await h.leaseFile()).holderIdentity, "intruder", "the lost leader overwrote the new holder's record");
  });

  for (const [how, breakIt] of [
    ["the lease file turns to garbage", () => h.replaceLeaseFile("{ this is not a lease")],
    ["the lock directory becomes unusable (unsafe mode)", () => chmod(h.lockDir, 0o777)],
  ] as const) {
    test(`renewals failing until the deadline (${how}) stop the child before the lease could expire and exit 76`, async () => {
      const a = await leader("e2e-a");
      const brokeAt = Date.now();
      await breakIt();
      assert.equal(await a.run.exitCode(), 76, `${a.run}`);
      const stop = await stopLine(a.start);
      assert.ok(stop, "the child was not stopped with its kill signal");
      const stoppedAfter = stop.ms - brokeAt;
      assert.ok(a.run.logs().some((l) => l.event === "renew_failed"), a.run.stderr);
      assert.ok(a.run.logs().some((l) => l.event === "lost" && l.reason === "deadline"), a.run.stderr);
      // The deadline runs from the last renewal sent, a retry period (plus a slow call) before the breakage:
      // the child must not be stopped at the first failure, and must be gone before the lease can expire.
      assert.ok(stoppedAfter > RENEW_DEADLINE_MS / 2, `stopped after ${stoppedAfter.toFixed(0)} ms, long before the renew deadline`);
      assert.ok(stoppedAfter < LEASE_MS, `stopped ${stoppedAfter.toFixed(0)} ms after renewals began to fail: the lease could have expired`);
      assert.deepEqual(sleepers(a.marker), []);
    });
  }

  test("--on-lost campaign stops the child, campaigns again and starts a new child with a larger fencing token", async () => {
    const a = await leader("e2e-a", ["--on-lost", "campaign"]);
    const term = Number(a.start.fields.token);
    // One second, never renewed: it expires and e2e-a acquires again.
    await h.replaceLeaseFile(foreignRecord("intruder", term + 1, 1));
    const second = await h.waitForChildEvent("the child to start again", (e) => e.kind === "start" && e.pid !== a.start.pid, 20_000);
    const stop = await stopLine(a.start);
    assert.ok(stop && stop.ms < second.ms, "the new child started before the old one stopped");
    assert.ok(Number(second.fields.token) > term + 1, `fencing token ${second.fields.token} after ${term} and the intruder's ${term + 1}`);
    assert.ok(a.run.running);
    a.run.signal("SIGTERM");
    assert.equal(await a.run.exitCode(), 0, `${a.run}`);
  });

  test("on a lost lease, a child that ignores SIGTERM is SIGKILLed after --kill-grace, before the lease could expire", async () => {
    const m = marker();
    const run = h.run("e2e-a", h.child("e2e-a", m, "ignore-term"));
    const start = await h.waitForChildEvent("the child to start", (e) => e.kind === "start");
    // The start line comes before the shell runs the sleep: without it, "the group is gone" would hold at once.
    await waitFor("the child's sleep to run", () => sleepers(m).length === 1);
    const brokeAt = performance.now();
    await h.replaceLeaseFile(foreignRecord("intruder", Number(start.fields.token) + 1, 15));
    await waitFor("the child's group to be gone", () => sleepers(m).length === 0, 10_000);
    const took = performance.now() - brokeAt;
    assert.equal(await run.exitCode(), 76, `${run}`);
    assert.ok(took >= GRACE_MS - 50, `SIGKILL after ${took.toFixed(0)} ms, before the grace`);
    assert.ok(took < LEASE_MS, `the child lived ${took.toFixed(0)} ms after the loss`);
  });
});

describe("status and release", () => {
  test("status shows the holder and term, exits 0 while someone leads and 3 when nobody does", async () => {
    const absent = await h.oneShot("status", ["--output", "json"]);
    assert.equal(absent.code, 3, absent.stderr);
    assert.equal((JSON.parse(absent.stdout) as { state: string }).state, "absent");

    const a = await leader("e2e-a");
    const text = await h.oneShot("status");
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /^holder:\s+e2e-a$/m);
    assert.match(text.stdout, new RegExp(`^term:\\s+${a.start.fields.token}$`, "m"));
    const json = await h.oneShot("status", ["--output", "json"]);
    assert.equal(json.code, 0, json.stderr);
    const s = JSON.parse(json.stdout) as Record<string, unknown>;
    assert.equal(s.holder, "e2e-a");
    assert.equal(s.term, Number(a.start.fields.token));
    assert.equal(s.live, true);
    assert.equal(s.lease, h.name);

    a.run.signal("SIGTERM");
    assert.equal(await a.run.exitCode(), 0, `${a.run}`);
    const released = await h.oneShot("status", ["--output", "json"]);
    assert.equal(released.code, 3, released.stderr);
    const r = JSON.parse(released.stdout) as Record<string, unknown>;
    assert.equal(r.state, "released");
    assert.equal(r.holder, null);
  });

  test("release by a non-holder does nothing; release --force makes the leader lose: child stopped, exit 76", async () => {
    const a = await leader("e2e-a");
    const polite = await h.oneShot("release", ["--identity", "someone-else"]);
    assert.equal(polite.code, 75, `release without --force: ${polite.stderr}`);
    assert.equal((await h.leaseFile()).holderIdentity, "e2e-a");
    // Long enough for several renewals: the leader carries on undisturbed.
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(a.run.running, `${a.run}`);
    assert.equal(await stopLine(a.start), undefined, "the child was stopped");

    const forced = await h.oneShot("release", ["--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(await a.run.exitCode(), 76, `${a.run}`);
    assert.ok(await stopLine(a.start), "the child was not stopped");
    assert.deepEqual(sleepers(a.marker), []);
    const status = await h.oneShot("status", ["--output", "json"]);
    assert.equal(status.code, 3, status.stdout);
  });
});
