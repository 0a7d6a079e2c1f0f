import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { chmod, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { E2E, TIMING, delay, marker, useE2E, waitFor } from "./support.js";

/**
 * Issue #14, everyday use, against the real CLI: unusable lock locations, the first stop signal,
 * read-only commands, cron (--quiet, --min-hold), the commands people type, JSON errors, crashes and
 * commands that cannot run. Step-down and status --watch on every backend: backends.test.ts.
 */

let h: E2E;
useE2E((fresh) => (h = fresh));

function stderrLines(text: string): string[] {
  return text.split("\n").filter((l) => l !== "");
}

describe("unusable lock locations fail fast", () => {
  test("a directory that cannot be created (/proc, a path through a file) exits 69 with one line naming it", async () => {
    const file = join(h.work, "a-file");
    await writeFile(file, "x");
    const cases = [
      { lock: "file:/proc/leader-run-e2e", reason: /\/proc cannot hold directories/ },
      { lock: `file:${file}/sub`, reason: /a part of the path is a file, not a directory \(ENOTDIR\)/ },
    ];
    for (const c of cases) {
      const p = h.spawn(c.lock, ["--lock", c.lock, "--name", h.name, "--quiet", ...TIMING, "--", "true"]);
      // Generous: the point is that it ends by itself at all (it used to hang forever).
      assert.equal(await p.exitCode(20_000), 69, `${p}`);
      const lines = stderrLines(p.stderr);
      assert.equal(lines.length, 1, p.stderr);
      assert.match(lines[0] ?? "", new RegExp(c.lock.slice("file:".length).replace(/[/.]/g, "\\$&")));
      assert.match(lines[0] ?? "", c.reason);
    }
  });

  test("status of a mistyped file: path creates nothing", async () => {
    const missing = join(h.work, "no", "such", "dir");
    const p = h.spawn("status", ["status", "--lock", `file:${missing}`, "--name", h.name]);
    assert.equal(await p.exitCode(), 3, `${p}`);
    assert.match(p.stdout, /^state:\s+absent/m);
    assert.equal(existsSync(join(h.work, "no")), false, "status created a directory");
  });

  test("the first SIGTERM ends a leader-run that is campaigning", async () => {
    const m = marker();
    const leader = h.run("e2e-a", h.child("e2e-a", m));
    await h.waitForChildEvent("the leader's child to start", (e) => e.kind === "start");
    const standby = h.run("e2e-b", h.child("e2e-b", marker()));
    await standby.waitForStandby();
    standby.signal("SIGTERM");
    assert.equal(await standby.exitCode(10_000), 143, `${standby}`);
    leader.signal("SIGTERM");
    assert.equal(await leader.exitCode(), 0, `${leader}`);
  });
});

describe("cron", () => {
  test("two hosts' cron 2 s apart with --no-wait --min-hold 30s --quiet: the job runs once and nothing is printed", async () => {
    const job = join(h.work, "job.sh");
    const runs = join(h.work, "runs.log");
    await writeFile(job, `#!/bin/sh\necho "ran $$" >> ${JSON.stringify(runs)}\n`);
    await chmod(job, 0o755);
    const cron = (host: string) =>
      h.spawn(host, ["--lock", h.lockUrl, "--name", h.name, "--identity", host, "--no-wait", "--min-hold", "30s", "--quiet", "--", job]);
    const first = cron("host-a");
    await waitFor("the first job to run", () => existsSync(runs), 20_000);
    await delay(2000);
    const second = cron("host-b");
    // The first job finished long ago; the lease is still held for the rest of --min-hold.
    assert.equal(await second.exitCode(20_000), 75, `${second}`);
    assert.equal(await first.exitCode(60_000), 0, `${first}`);
    assert.equal((await readFile(runs, "utf8")).split("\n").filter((l) => l !== "").length, 1, "the job ran more than once");
    for (const p of [first, second]) {
      assert.equal(p.stdout, "", `${p.label} printed on stdout`);
      assert.equal(p.stderr, "", `${p.label} printed on stderr (cron would mail it)`);
    }
    // And the lease was released at the end, so the next slot runs at once.
    const s = await h.oneShot("status", ["--output", "json"]);
    assert.equal((JSON.parse(s.stdout) as { state: string }).state, "released", s.stdout);
  });
});

describe("a CLI that never surprises", () => {
  test("`run -- cmd` runs the command, `help` prints the help, -V the version", async () => {
    const run = h.spawn("run", ["run", "--lock", h.lockUrl, "--name", h.name, "-q", "--", "sh", "-c", "echo ok"]);
    assert.equal(await run.exitCode(), 0, `${run}`);
    assert.equal(run.stdout, "ok\n");
    const help = h.spawn("help", ["help"]);
    assert.equal(await help.exitCode(), 0, `${help}`);
    assert.match(help.stdout, /^leader-run \[options\] -- <command>/);
    const version = h.spawn("-V", ["-V"]);
    assert.equal(await version.exitCode(), 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
  });

  test("usage errors are one JSON line under --log-format json", async () => {
    const p = h.spawn("json usage", ["--log-format", "json", "--restart", "sometimes", "--", "true"]);
    assert.equal(await p.exitCode(), 64);
    const lines = stderrLines(p.stderr);
    assert.equal(lines.length, 1, p.stderr);
    const line = JSON.parse(lines[0] ?? "") as Record<string, unknown>;
    assert.equal(line.event, "usage_error");
    assert.match(String(line.msg), /--restart/);
  });

  test("a crashed child (SIGSEGV) is logged as a warning, and shows under --quiet", async () => {
    const p = h.spawn("crash", ["--lock", h.lockUrl, "--name", h.name, "--quiet", "--log-format", "json", "--", "sh", "-c", "kill -SEGV $$"]);
    assert.equal(await p.exitCode(), 139, `${p}`);
    const exited = p.logs().find((l) => l.event === "child_exited");
    assert.equal(exited?.level, "warn", p.stderr);
    assert.match(String(exited?.msg), /SIGSEGV/);
  });

  test("a command that does not exist fails with 127 at once, without waiting for the lease", async () => {
    const leader = h.run("e2e-a", h.child("e2e-a", marker()));
    await h.waitForChildEvent("the leader's child to start", (e) => e.kind === "start");
    const p = h.spawn("typo", ["--lock", h.lockUrl, "--name", h.name, ...TIMING, "--", "no-such-command-e2e"]);
    assert.equal(await p.exitCode(10_000), 127, `${p}`);
    assert.match(p.stderr, /command not found: no-such-command-e2e/);
    assert.doesNotMatch(p.stderr, /waiting/);
    leader.signal("SIGTERM");
    assert.equal(await leader.exitCode(), 0, `${leader}`);
  });
});

describe("lifecycle hooks", () => {
  test("hooks get the lease, identity, term and new leader, are time-limited and logged, and delay neither the child nor the release", async () => {
    const file = join(h.work, "hooks.log");
    const started = marker();
    const stopped = marker();
    const line = `echo "$LEADER_RUN_HOOK name=$LEADER_RUN_NAME identity=$LEADER_RUN_IDENTITY term=$LEADER_RUN_FENCING_TOKEN leader=\${LEADER_RUN_NEW_LEADER-}" >> ${JSON.stringify(file)}`;
    const a = h.run("e2e-a", h.child("e2e-a", marker()), [
      "--hook-timeout", "3s",
      // Both hang after writing their line: the child must start and the lease be released anyway.
      "--on-started-leading", `${line}; sleep ${started}`,
      "--on-stopped-leading", `${line}; sleep ${stopped}`,
      "--on-new-leader", line,
    ]);
    const child = await h.waitForChildEvent("e2e-a's child to start", (e) => e.kind === "start");
    const term = child.fields.token ?? "?";
    const hooks = async (): Promise<string[]> => (existsSync(file) ? (await readFile(file, "utf8")).split("\n").filter((l) => l !== "") : []);
    await waitFor("the started hook", async () => (await hooks()).some((l) => l.startsWith("on-started-leading")));
    a.signal("SIGTERM");
    await waitFor("the stopped hook", async () => (await hooks()).some((l) => l.startsWith("on-stopped-leading")), 15_000);
    // The stopped hook still sleeps, yet the lease is already released.
    const s = await h.oneShot("status", ["--output", "json"]);
    assert.equal((JSON.parse(s.stdout) as { state: string }).state, "released", s.stdout);
    assert.equal(await a.exitCode(20_000), 0, `${a}`);
    const lines = await hooks();
    assert.ok(lines.includes(`on-started-leading name=${h.name} identity=e2e-a term=${term} leader=`), lines.join("\n"));
    assert.ok(lines.includes(`on-new-leader name=${h.name} identity=e2e-a term=${term} leader=e2e-a`), lines.join("\n"));
    assert.ok(lines.includes(`on-stopped-leading name=${h.name} identity=e2e-a term=${term} leader=`), lines.join("\n"));
    const finished = a.logs().filter((l) => l.event === "hook_finished");
    assert.ok(finished.some((l) => l.hook === "on-new-leader" && l.exit_code === 0 && l.level === "info"), a.stderr);
    for (const hook of ["on-started-leading", "on-stopped-leading"]) {
      assert.ok(finished.some((l) => l.hook === hook && l.level === "warn" && /--hook-timeout/.test(String(l.msg))), `${hook} was not killed at the timeout:\n${a.stderr}`);
    }
  });
});

describe("step-down", () => {
  test("step-down of a free lease exits 3; JSON when asked", async () => {
    const r = await h.oneShot("step-down", ["--output", "json"]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { handedOver: boolean }).handedOver, false);
  });
});
