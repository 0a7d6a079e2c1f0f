import assert from "node:assert/strict";
import { chmod, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { E2E, LEASE_MS, RETRY_MS, delay, httpStatus, marker, overlapSampler, sleepers, useE2E, waitFor, type ChildEvent, type LeaderRunProcess } from "./support.js";

/**
 * Several real leader-run processes on one file lease: mutual exclusion of their children across
 * hand-overs, the speed of a hand-over, the orphan guard when leader-run is SIGKILLed, and --http.
 */

let h: E2E;
useE2E((fresh) => (h = fresh));

/**
 * Bound on a hand-over, from the old child's exit to the new child's start: room for a loaded machine,
 * yet below LEASE_MS - RETRY_MS, the earliest a lease left to expire (not released) could pass.
 */
const HANDOVER_BOUND_MS = 2000;

function starts(events: ChildEvent[]): ChildEvent[] {
  return events.filter((e) => e.kind === "start");
}

function stopOf(events: ChildEvent[], start: ChildEvent): ChildEvent | undefined {
  return events.find((e) => e.kind === "stop" && e.pid === start.pid);
}

/** Waits until the n-th child (1-based) has started and returns its start line. */
async function nthStart(n: number, timeoutMs = 20_000): Promise<ChildEvent> {
  let found: ChildEvent | undefined;
  await waitFor(`child #${n} to start`, async () => {
    found = starts(await h.childEvents())[n - 1];
    return found !== undefined;
  }, timeoutMs);
  return found as ChildEvent;
}

describe("hand-over between leader-run processes on one file lease", () => {
  test("exactly one child runs at a time across hand-overs, and each term's fencing token is larger", async () => {
    const ids = ["e2e-a", "e2e-b", "e2e-c"];
    const markers = new Map(ids.map((id) => [id, marker()]));
    const runs = new Map<string, LeaderRunProcess>();
    const sampler = overlapSampler([...markers.values()]);
    try {
      for (const id of ids) runs.set(id, h.run(id, h.child(id, markers.get(id) ?? "")));
      for (let n = 1; n <= ids.length; n++) {
        const start = await nthStart(n);
        const leader = runs.get(start.tag);
        assert.ok(leader, `unknown child tag ${start.tag}`);
        // The others must be campaigning (not still starting up) when the leader leaves.
        for (const other of runs.values()) if (other !== leader && other.running) await other.waitForStandby();
        // Let the sampler see this child run (the child starts its sleep right after its start line);
        // a sample spawns pgrep, which a loaded machine may take any time to do.
        const m = markers.get(start.tag) ?? "";
        await waitFor(`the sampler to see ${start.tag}'s sleep`, () => sampler.seen.has(m));
        leader.signal("SIGTERM");
        assert.equal(await leader.exitCode(), 0, `${leader}`);
      }
    } finally {
      const { overlaps, seen } = await sampler.stop();
      assert.deepEqual(overlaps, [], "two children were alive at the same time");
      assert.equal(seen.size, ids.length, "the sampler did not see every child");
    }

    const events = await h.childEvents();
    const started = starts(events).sort((a, b) => a.ms - b.ms);
    assert.equal(started.length, 3, JSON.stringify(events));
    assert.deepEqual(new Set(started.map((s) => s.tag)), new Set(ids), "each process led once");
    let previous: { stop: ChildEvent; token: number } | undefined;
    for (const start of started) {
      const stop = stopOf(events, start);
      assert.ok(stop, `child of ${start.tag} has no stop line`);
      assert.equal(stop.fields.signal, "TERM");
      const token = Number(start.fields.token);
      assert.ok(Number.isSafeInteger(token), `fencing token ${start.fields.token}`);
      assert.equal(start.fields.identity, start.tag);
      assert.equal(start.fields.name, h.name);
      assert.equal(start.fields.lock, h.lockUrl);
      if (previous) {
        assert.ok(start.ms > previous.stop.ms, `${start.tag} started ${(previous.stop.ms - start.ms).toFixed(1)} ms before the previous child stopped`);
        assert.ok(token > previous.token, `fencing token ${token} after ${previous.token}`);
      }
      previous = { stop, token };
    }
  });

  test("SIGTERM to the leader hands over: the standby's child starts within 2 s of the old child's exit", async (t) => {
    const gaps: number[] = [];
    let leader = h.run("e2e-a", h.child("e2e-a", marker()));
    await nthStart(1);
    for (const [n, id] of [[2, "e2e-b"], [3, "e2e-c"]] as const) {
      const standby = h.run(id, h.child(id, marker()));
      await standby.waitForStandby();
      leader.signal("SIGTERM");
      const start = await nthStart(n);
      assert.equal(start.tag, id);
      assert.equal(await leader.exitCode(), 0, `${leader}`);
      const events = await h.childEvents();
      const oldStart = starts(events)[n - 2];
      const oldStop = oldStart && stopOf(events, oldStart);
      assert.ok(oldStop, "the old child wrote no stop line");
      gaps.push(start.ms - oldStop.ms);
      leader = standby;
    }
    leader.signal("SIGTERM");
    assert.equal(await leader.exitCode(), 0, `${leader}`);
    t.diagnostic(`old child's exit -> new child's start: ${gaps.map((g) => `${g.toFixed(0)} ms`).join(", ")}`);
    for (const gap of gaps) {
      assert.ok(gap > 0, "the new child started before the old one exited");
      // The gap spans leader-run's 50 ms group poll, the release (with fsync), waking the standby and
      // spawning its sh: a few hundred ms, more on a loaded machine. A lease left to expire instead
      // would pass only about LEASE_MS - RETRY_MS after the old child's exit, well above this bound.
      assert.ok(gap <= HANDOVER_BOUND_MS, `hand-over took ${gap.toFixed(0)} ms (bound: ${HANDOVER_BOUND_MS} ms)`);
    }
  });

  test("a waiting standby takes over on the release notification, with its guard started while it waited", async () => {
    // A retry period far longer than any hand-over: only the backend's change notification can make the
    // standby acquire before its next scheduled attempt, at least RP after its first one.
    const timing = ["--lease-duration", "60s", "--renew-deadline", "40s", "--retry-period", "15s", "--kill-grace", "500ms", "--log-level", "debug"];
    const leader = h.run("e2e-a", h.child("e2e-a", marker()), [], timing);
    await nthStart(1);
    const standby = h.run("e2e-b", h.child("e2e-b", marker()), [], timing);
    const waiting = await standby.waitForLog("waiting");
    // Ready for a fast hand-over: the guard runs (idle) before the lease is free.
    await standby.waitForLog("guard_started");
    leader.signal("SIGTERM");
    assert.equal(await leader.exitCode(), 0, `${leader}`);
    assert.equal((await nthStart(2, 30_000)).tag, "e2e-b");
    const acquired = await standby.waitForLog("acquired");
    const waitedMs = Date.parse(String(acquired.time)) - Date.parse(String(waiting.time));
    assert.ok(waitedMs < 15_000, `the standby acquired ${waitedMs} ms after its first attempt: at its retry, not on the notification`);
    const after = standby.events().slice(standby.events().indexOf("waiting"));
    const order = after.filter((e) => ["guard_started", "lease_changed", "acquired", "guard_armed", "child_started"].includes(e));
    // Woken by the release, and at acquisition only the child's deadline went to the guard already running.
    assert.deepEqual(order.slice(order.indexOf("acquired") - 1), ["lease_changed", "acquired", "guard_armed", "child_started"], `${standby}`);
    assert.equal(order.filter((e) => e === "guard_started").length, 1, `${standby}`);
    assert.ok(order.indexOf("guard_started") < order.indexOf("acquired"), `${standby}`);
    standby.signal("SIGTERM");
    assert.equal(await standby.exitCode(), 0, `${standby}`);
  });

  test("a standby whose command became unrunnable while it waited exits 126 at once, leaving no idle start gate behind", async () => {
    // The standby's start gate is spawned while it waits; the command is then made unrunnable (a deploy
    // replacing it, a chmod). The start fails its pre-check: the prepared gate must be discarded, or
    // it waits for "go" forever and keeps leader-run from exiting.
    const script = join(h.work, "job.sh");
    await writeFile(script, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
    const leader = h.run("e2e-a", h.child("e2e-a", marker()));
    await nthStart(1);
    const standby = h.run("e2e-b", [script]);
    await standby.waitForStandby();
    await delay(1_000); // the guard and the gate are spawned right after the first failed attempt
    await chmod(script, 0o644);
    leader.signal("SIGTERM");
    assert.equal(await leader.exitCode(), 0, `${leader}`);
    await standby.waitForLog("acquired");
    assert.equal(await standby.exitCode(10_000), 126, `${standby}`);
  });

  test("SIGKILL of leader-run: the watchdog stops the child's group long before the lease can expire, then a standby takes over", async (t) => {
    // A longer lease than elsewhere, so "long before it expires" and "faster than waiting for expiry"
    // are far apart; the test itself still takes only as long as the fast path.
    const leaseMs = 10_000;
    const timing = ["--lease-duration", "10s", "--renew-deadline", "6s", "--retry-period", "300ms", "--kill-grace", "500ms"];
    const markA = marker();
    const a = h.run("e2e-a", h.child("e2e-a", markA), [], timing);
    await nthStart(1);
    const b = h.run("e2e-b", h.child("e2e-b", marker()), [], timing);
    await b.waitForStandby();
    await waitFor("the leader's child to run", () => sleepers(markA).length === 1);

    const killedAt = Date.now();
    a.signal("SIGKILL");
    await waitFor("the SIGKILLed leader-run's child to be stopped", () => sleepers(markA).length === 0, 10_000);
    const goneAfter = Date.now() - killedAt;
    assert.equal((await a.exit()).signal, "SIGKILL");

    const startB = await nthStart(2);
    const events = await h.childEvents();
    const startA = starts(events)[0];
    const stopA = startA && stopOf(events, startA);
    assert.ok(stopA, "the orphaned child was not sent its kill signal (no stop line)");
    assert.equal(stopA.fields.signal, "TERM");
    assert.equal(startB.tag, "e2e-b");
    assert.ok(startB.ms > stopA.ms, "the standby's child started before the old one stopped");
    const takeover = startB.ms - killedAt;
    t.diagnostic(`SIGKILL -> old child's group gone: ${goneAfter} ms; SIGKILL -> standby's child started: ${takeover.toFixed(0)} ms`);
    // The watchdog sends the kill signal at once; the lease cannot expire before ~leaseMs - retry period,
    // and this bound (room for a loaded machine) stays far below that.
    assert.ok(goneAfter < 4000, `the orphan lived ${goneAfter} ms after leader-run died`);
    // Dead-holder detection: no waiting for the lease to expire. (The standby also waits until the
    // orphan has been reaped by init; a sandbox init that reaps late adds to this.)
    assert.ok(takeover < leaseMs / 2, `the standby took ${takeover.toFixed(0)} ms to take over`);

    b.signal("SIGTERM");
    assert.equal(await b.exitCode(), 0, `${b}`);
  });

  test("--http: /leader is 200 on exactly one instance, and on the other within ~2 s of SIGINT to the leader", async (t) => {
    const runs = ["e2e-a", "e2e-b"].map((id) => h.run(id, h.child(id, marker()), ["--http", "127.0.0.1:0"]));
    const urls = await Promise.all(runs.map(async (r) => String((await r.waitForLog("http_listening")).url)));
    const start = await nthStart(1);
    const leaderIndex = runs.findIndex((r) => r.label === start.tag);
    const leader = runs[leaderIndex];
    const other = runs[1 - leaderIndex];
    const leaderUrl = urls[leaderIndex];
    const otherUrl = urls[1 - leaderIndex];
    assert.ok(leader && other && leaderUrl && otherUrl);
    await waitFor("/leader to be 200 on the leader", async () => (await httpStatus(`${leaderUrl}/leader`)) === 200);
    await other.waitForStandby();
    const otherStatus = await httpStatus(`${otherUrl}/leader`);
    assert.ok(otherStatus >= 400, `/leader of the standby answered ${otherStatus}`);

    const sentAt = performance.now();
    leader.signal("SIGINT");
    await waitFor("/leader to turn 200 on the standby", async () => (await httpStatus(`${otherUrl}/leader`)) === 200, 10_000);
    const took = performance.now() - sentAt;
    t.diagnostic(`SIGINT to the leader -> /leader 200 on the standby: ${took.toFixed(0)} ms`);
    assert.equal(await leader.exitCode(), 0, `${leader}`);
    // The hand-over itself (bound above) plus the 20 ms polling and the HTTP round trips; still below
    // LEASE_MS - RETRY_MS, the earliest a lease left to expire could pass.
    const bound = HANDOVER_BOUND_MS + 500;
    assert.ok(bound < LEASE_MS - RETRY_MS, "the bound no longer tells a release from an expiry");
    assert.ok(took <= bound, `the standby's /leader turned 200 only after ${took.toFixed(0)} ms (bound: ${bound} ms)`);

    await nthStart(2);
    other.signal("SIGINT");
    assert.equal(await other.exitCode(), 0, `${other}`);
  });

  test("--http on a port already in use exits 64 with one line and starts nothing", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const address = server.address();
      assert.ok(address && typeof address === "object");
      const r = h.run("e2e-a", h.child("e2e-a", marker()), ["--http", `127.0.0.1:${address.port}`]);
      assert.equal(await r.exitCode(), 64, `${r}`);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      // h.run logs JSON, so the usage error is one JSON line too.
      const line = JSON.parse(lines[0] ?? "") as { event?: string; exit_code?: number; msg?: string };
      assert.equal(line.event, "usage_error");
      assert.equal(line.exit_code, 64);
      assert.match(line.msg ?? "", /\b(in use|EADDRINUSE)\b/i);
      assert.deepEqual(await h.childEvents(), []);
      await assert.rejects(h.leaseFile(), { code: "ENOENT" }, "the lease was touched");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
