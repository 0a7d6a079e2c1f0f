import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { main } from "../../src/cli/main.js";
import { OPTIONS, deriveKillGraceMs, envName, parseCommandLine, validateTimings } from "../../src/cli/options.js";
import type { RunOptions } from "../../src/cli/options.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const CLI = fileURLToPath(new URL("./fixtures/cli.ts", import.meta.url));

async function runMain(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const code = await main(argv, {
    env,
    cwd: "/srv/app",
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
  });
  return { code, stdout, stderr };
}

async function runOptions(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<RunOptions> {
  const parsed = await parseCommandLine(argv, { env, cwd: "/srv/app" });
  assert.equal(parsed.command, "run");
  if (parsed.command !== "run") throw new Error("unreachable");
  return parsed.options;
}

describe("usage errors: one line, exit 64, before anything starts", () => {
  const cases: { argv: string[]; env?: NodeJS.ProcessEnv; message: string | RegExp }[] = [
    { argv: ["--bogus", "--", "x"], message: "unknown option --bogus (see leader-run --help; the command goes after --)" },
    { argv: ["--fooBar", "-z", "--", "x"], message: /^unknown options --fooBar, -z / },
    { argv: [], message: "missing command: leader-run [options] -- <command> [args...] (see leader-run --help)" },
    { argv: ["--"], message: /^missing command/ },
    { argv: ["--no-wait", "--", ""], message: /^missing command/ },
    { argv: ["echo", "hi"], message: 'unknown command "echo"; to run a command, put it after --: leader-run [options] -- echo hi' },
    { argv: ["--lease-duration", "15x", "--", "x"], message: '--lease-duration: "15x" is not a duration; use Go syntax like 15s, 1m30s or 500ms' },
    { argv: ["--renew-deadline=-1s", "--", "x"], message: /^--renew-deadline: "-1s" is negative/ },
    { argv: ["--lease-duration", "-5s", "--", "x"], message: /^--lease-duration: "-5s" is negative/ },
    { argv: ["--name", "--", "x"], message: "--name needs a value" },
    { argv: ["--wait", "--no-wait", "--", "x"], message: "--wait needs a value" },
    { argv: ["--wait", "1000h", "--", "x"], message: /^--wait: "1000h" is too long; the longest is 596h31m23.647s/ },
    {
      argv: ["--lease-duration", "10s", "--", "x"],
      message: "leaseDuration must be greater than renewDeadline: --lease-duration is 10s, --renew-deadline is 10s; raise --lease-duration above 10s or lower --renew-deadline below 10s",
    },
    {
      argv: ["--renew-deadline", "2s", "--", "x"],
      message: /^renewDeadline must be greater than retryPeriod\*JitterFactor: --renew-deadline is 2s, --retry-period is 2s \(x1\.2 = 2\.4s\); raise --renew-deadline above 2\.4s or lower --retry-period below 1\.66/,
    },
    {
      argv: ["--lease-duration", "900ms", "--renew-deadline", "600ms", "--retry-period", "100ms", "--", "x"],
      message: "leaseDuration must be at least 1s (got 900ms): lease records store whole seconds, so raise --lease-duration to 1s or more",
    },
    { argv: ["--retry-period", "0", "--", "x"], message: "retryPeriod must be greater than zero: set --retry-period, e.g. 2s" },
    {
      argv: ["--kill-grace", "5s", "--", "x"],
      message:
        "--kill-grace 5s is too long: renew-deadline 10s + kill-grace 5s must stay below lease-duration 15s so the command is dead before another process can take over; lower --kill-grace to 2.5s or raise --lease-duration to 20s",
    },
    { argv: ["--kill-grace", "1m", "--lease-duration", "30s", "--renew-deadline", "20s", "--", "x"], message: /lower --kill-grace to 5s or raise --lease-duration to 2m20s$/ },
    { argv: ["--lock", "mysql://u:hunter2@h/x", "--", "x"], message: /^--lock "mysql:\/\/u@h\/x": unknown lock scheme "mysql:"; use one of file:, redis:\/\// },
    { argv: ["--lock", "", "--", "x"], message: "--lock needs a value" },
    { argv: ["--kill-signal", "FOO", "--", "x"], message: '--kill-signal "FOO" is not a signal; use a name like SIGTERM, SIGINT, SIGQUIT or SIGHUP' },
    { argv: ["--kill-signal", "STOP", "--", "x"], message: /^--kill-signal SIGSTOP does not stop a process/ },
    { argv: ["--conflict-exit-code", "256", "--", "x"], message: '--conflict-exit-code "256": use a whole number from 0 to 255' },
    { argv: ["--conflict-exit-code", "-1", "--", "x"], message: '--conflict-exit-code "-1": use a whole number from 0 to 255' },
    { argv: ["--conflict-exit-code", "7.5", "--", "x"], message: /^--conflict-exit-code "7.5"/ },
    { argv: ["--http", "localhost", "--", "x"], message: /^--http "localhost": missing :port/ },
    { argv: ["--restart", "sometimes", "--", "x"], message: '--restart "sometimes": use one of never, on-failure, always' },
    { argv: ["--on-lost", "panic", "--", "x"], message: '--on-lost "panic": use one of exit, campaign' },
    { argv: ["--log-format", "xml", "--", "x"], message: '--log-format "xml": use one of text, json' },
    { argv: ["--log-level", "trace", "--", "x"], message: '--log-level "trace": use one of debug, info, warn, error' },
    { argv: ["--name", "My_Job", "--", "x"], message: /^--name "My_Job" must be a valid Kubernetes object name.*; for example "my-job"$/ },
    { argv: ["--identity", "a\nb", "--", "x"], message: /^--identity: use at most 253 printable characters/ },
    { argv: ["--namespace", "prod", "--", "x"], message: "--namespace is only for --lock kubernetes: (the lock is file)" },
    { argv: ["--lock", "k8s:", "--namespace", "Prod!", "--", "x"], message: /^--namespace "Prod!": a namespace is a DNS label/ },
    { argv: ["--wait", "5s", "--no-wait", "--", "x"], message: "--wait and --no-wait contradict each other; use one of them" },
    { argv: ["--release", "--no-release", "--", "x"], message: "--release and --no-release contradict each other; use one of them" },
    { argv: ["status"], message: /^status needs the lease: --name <lease>, or the command after --/ },
    { argv: ["status", "extra"], message: /^status takes no arguments/ },
    { argv: ["status", "--name", "x", "--wait", "5s"], message: /^unknown option --wait/ },
    { argv: ["status", "--name", "x", "--output", "yaml"], message: '--output "yaml": use one of text, json' },
    { argv: ["release", "--name", "x"], message: /^release needs --identity <holder>.*or --force/ },
    { argv: ["--", "x"], env: { LEADER_RUN_LEASE_DURATION: "soon" }, message: 'LEADER_RUN_LEASE_DURATION: "soon" is not a duration; use Go syntax like 15s, 1m30s or 500ms' },
    { argv: ["--", "x"], env: { LEADER_RUN_SHELL: "maybe" }, message: 'LEADER_RUN_SHELL="maybe": use true or false' },
    { argv: ["--", "x"], env: { LEADER_RUN_LOCK: "ftp://h" }, message: /^LEADER_RUN_LOCK "ftp:\/\/h": unknown lock scheme/ },
    { argv: ["--", "x"], env: { LEADER_RUN_WAIT: "5s", LEADER_RUN_NO_WAIT: "1" }, message: "LEADER_RUN_WAIT and LEADER_RUN_NO_WAIT contradict each other; use one of them" },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.argv)}${c.env ? ` with ${JSON.stringify(c.env)}` : ""} → ${String(c.message).slice(0, 60)}`, async () => {
      const r = await runMain(c.argv, c.env);
      assert.equal(r.code, 64, r.stderr);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr.split("\n").length, 2, `one line: ${r.stderr}`);
      assert.ok(r.stderr.endsWith("\n"));
      const line = r.stderr.slice(0, -1);
      assert.ok(line.startsWith("leader-run: "), line);
      const message = line.slice("leader-run: ".length);
      if (typeof c.message === "string") assert.equal(message, c.message);
      else assert.match(message, c.message);
      assert.ok(!r.stderr.includes("hunter2"));
    });
  }
});

describe("usage errors start nothing (separate process)", () => {
  const dir = mkdtempSync(join(tmpdir(), "leader-run-cli-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const bad of [["--lease-duration", "10s"], ["--bogus"], ["--kill-grace", "9s"], ["--lock", "nope:"]]) {
    it(`${bad.join(" ")} exits 64 without running the command or touching the lock directory`, () => {
      const marker = join(dir, `ran-${bad[0]?.slice(2)}`);
      const lockDir = join(dir, `locks-${bad[0]?.slice(2)}`);
      const env: NodeJS.ProcessEnv = { ...process.env, LEADER_RUN_LOCK: `file:${lockDir}` };
      delete env.LEADER_RUN_FENCING_TOKEN;
      const r = spawnSync(process.execPath, ["--import", "tsx", CLI, ...bad, "--", "touch", marker], {
        cwd: ROOT,
        env,
        encoding: "utf8",
        timeout: 30_000,
      });
      assert.equal(r.status, 64, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /^leader-run: [^\n]+\n$/);
      assert.equal(existsSync(marker), false, "the command must not run");
      assert.equal(existsSync(lockDir), false, "the lock must not be opened");
    });
  }
});

describe("resolved run options", () => {
  it("has the documented defaults", async () => {
    const o = await runOptions(["--", "node", "cron.js"], { POD_NAME: "web-1" });
    assert.equal(o.name, "node-cron-js");
    assert.equal(o.nameDerived, true);
    assert.match(o.identity, /^web-1_[0-9a-f]{8}$/);
    assert.equal(o.identityDerived, true);
    assert.deepEqual(o.lock, { kind: "file", url: "file:", redacted: "file:" });
    assert.deepEqual(o.command, ["node", "cron.js"]);
    assert.equal(o.leaseDurationMs, 15_000);
    assert.equal(o.renewDeadlineMs, 10_000);
    assert.equal(o.retryPeriodMs, 2_000);
    assert.equal(o.killGraceMs, 2_500);
    assert.equal(o.killGraceDerived, true);
    assert.equal(o.waitMs, undefined);
    assert.equal(o.noWait, false);
    assert.equal(o.conflictExitCode, 75);
    assert.equal(o.killSignal, "SIGTERM");
    assert.equal(o.restart, "never");
    assert.equal(o.restartDelayMs, 1_000);
    assert.equal(o.onLost, "exit");
    assert.equal(o.release, true);
    assert.equal(o.shell, false);
    assert.equal(o.http, undefined);
    assert.equal(o.logFormat, "text");
    assert.equal(o.logLevel, "info");
    assert.equal(o.quiet, false);
    assert.deepEqual(o.warnings, []);
  });

  it("reads every flag", async () => {
    const o = await runOptions([
      "--lock", "file:locks",
      "--name", "nightly",
      "--identity", "me",
      "--lease-duration", "30",
      "--renew-deadline", "20s",
      "--retry-period", "500ms",
      "--wait", "1m",
      "--conflict-exit-code", "0",
      "--kill-signal", "int",
      "--kill-grace", "4s",
      "--restart", "on-failure",
      "--restart-delay", "0",
      "--on-lost", "campaign",
      "--no-release",
      "--shell",
      "--http", ":9090",
      "--log-format", "json",
      "--log-level", "debug",
      "--", "sleep", "5", "--help", "-x",
    ]);
    assert.deepEqual(o.lock, { kind: "file", dir: "/srv/app/locks", url: "file:locks", redacted: "file:locks" });
    assert.equal(o.name, "nightly");
    assert.equal(o.nameDerived, false);
    assert.equal(o.identity, "me");
    assert.equal(o.leaseDurationMs, 30_000);
    assert.equal(o.renewDeadlineMs, 20_000);
    assert.equal(o.retryPeriodMs, 500);
    assert.equal(o.waitMs, 60_000);
    assert.equal(o.conflictExitCode, 0);
    assert.equal(o.killSignal, "SIGINT");
    assert.equal(o.killGraceMs, 4_000);
    assert.equal(o.killGraceDerived, false);
    assert.equal(o.restart, "on-failure");
    assert.equal(o.restartDelayMs, 0);
    assert.equal(o.onLost, "campaign");
    assert.equal(o.release, false);
    assert.equal(o.shell, true);
    assert.deepEqual(o.http, { host: "", port: 9090 });
    assert.equal(o.logFormat, "json");
    assert.equal(o.logLevel, "debug");
    assert.deepEqual(o.command, ["sleep", "5", "--help", "-x"], "everything after -- belongs to the command, as strings");
  });

  it("--wait 0 means --no-wait; --kill-signal accepts numbers", async () => {
    const o = await runOptions(["--wait", "0", "--kill-signal", "15", "--", "x"]);
    assert.equal(o.noWait, true);
    assert.equal(o.waitMs, undefined);
    assert.equal(o.killSignal, "SIGTERM");
  });

  it("--quiet raises the level to warn, never lowers it", async () => {
    assert.equal((await runOptions(["--quiet", "--", "x"])).logLevel, "warn");
    assert.equal((await runOptions(["--quiet", "--log-level", "debug", "--", "x"])).logLevel, "warn");
    assert.equal((await runOptions(["--quiet", "--log-level", "error", "--", "x"])).logLevel, "error");
  });

  it("warns when the --lock flag carries a password (visible in ps), not when it comes from the env twin", async () => {
    const fromFlag = await runOptions(["--lock", "redis://:hunter2@r:6379", "--", "x"]);
    assert.equal(fromFlag.warnings.length, 1);
    assert.match(fromFlag.warnings[0] ?? "", /process list; pass it as LEADER_RUN_LOCK instead/);
    assert.ok(!fromFlag.warnings[0]?.includes("hunter2"));
    assert.equal(fromFlag.lock.redacted, "redis://r:6379");
    const fromEnv = await runOptions(["--", "x"], { LEADER_RUN_LOCK: "redis://:hunter2@r:6379" });
    assert.deepEqual(fromEnv.warnings, []);
  });

  it("a derived kill grace always satisfies renewDeadline + killGrace < leaseDuration", () => {
    for (const [ld, rd] of [[15_000, 10_000], [2_000, 1_200], [60_000, 20_000], [1_000, 999]] as const) {
      const g = deriveKillGraceMs(ld, rd);
      assert.ok(rd + g < ld, `${ld} ${rd} ${g}`);
      assert.ok(g <= 10_000);
      assert.equal(validateTimings({ leaseDurationMs: ld, renewDeadlineMs: rd, retryPeriodMs: 100 }), g);
    }
    assert.equal(deriveKillGraceMs(60_000, 20_000), 10_000, "capped at 10s");
  });
});

describe("environment twins", () => {
  it("every option has a LEADER_RUN_* twin", async () => {
    const o = await runOptions(["--", "x"], {
      LEADER_RUN_LOCK: "file:/var/lock/x",
      LEADER_RUN_NAME: "from-env",
      LEADER_RUN_IDENTITY: "env-id",
      LEADER_RUN_LEASE_DURATION: "30s",
      LEADER_RUN_RENEW_DEADLINE: "20s",
      LEADER_RUN_RETRY_PERIOD: "1s",
      LEADER_RUN_WAIT: "2m",
      LEADER_RUN_CONFLICT_EXIT_CODE: "3",
      LEADER_RUN_KILL_SIGNAL: "SIGHUP",
      LEADER_RUN_KILL_GRACE: "3s",
      LEADER_RUN_RESTART: "always",
      LEADER_RUN_RESTART_DELAY: "2s",
      LEADER_RUN_ON_LOST: "campaign",
      LEADER_RUN_RELEASE: "false",
      LEADER_RUN_SHELL: "yes",
      LEADER_RUN_HTTP: "127.0.0.1:0",
      LEADER_RUN_LOG_FORMAT: "json",
      LEADER_RUN_LOG_LEVEL: "warn",
    });
    assert.equal(o.lock.kind === "file" ? o.lock.dir : "", "/var/lock/x");
    assert.equal(o.name, "from-env");
    assert.equal(o.identity, "env-id");
    assert.equal(o.leaseDurationMs, 30_000);
    assert.equal(o.renewDeadlineMs, 20_000);
    assert.equal(o.retryPeriodMs, 1_000);
    assert.equal(o.waitMs, 120_000);
    assert.equal(o.conflictExitCode, 3);
    assert.equal(o.killSignal, "SIGHUP");
    assert.equal(o.killGraceMs, 3_000);
    assert.equal(o.restart, "always");
    assert.equal(o.restartDelayMs, 2_000);
    assert.equal(o.onLost, "campaign");
    assert.equal(o.release, false);
    assert.equal(o.shell, true);
    assert.deepEqual(o.http, { host: "127.0.0.1", port: 0 });
    assert.equal(o.logFormat, "json");
    assert.equal(o.logLevel, "warn");
    const q = await runOptions(["--", "x"], { LEADER_RUN_NO_WAIT: "true", LEADER_RUN_QUIET: "1", LEADER_RUN_NO_RELEASE: "on" });
    assert.equal(q.noWait, true);
    assert.equal(q.logLevel, "warn");
    assert.equal(q.release, false);
  });

  it("flags win over their env twin", async () => {
    const o = await runOptions(["--lease-duration", "40s", "--name", "flag-name", "--shell=false", "--", "x"], {
      LEADER_RUN_LEASE_DURATION: "30s",
      LEADER_RUN_NAME: "env-name",
      LEADER_RUN_SHELL: "true",
    });
    assert.equal(o.leaseDurationMs, 40_000);
    assert.equal(o.name, "flag-name");
    assert.equal(o.shell, false);
  });

  it("a flag beats the env twin of its opposite option (--wait vs LEADER_RUN_NO_WAIT, --release vs LEADER_RUN_NO_RELEASE)", async () => {
    const a = await runOptions(["--wait", "5s", "--", "x"], { LEADER_RUN_NO_WAIT: "1" });
    assert.equal(a.noWait, false);
    assert.equal(a.waitMs, 5_000);
    const b = await runOptions(["--no-wait", "--", "x"], { LEADER_RUN_WAIT: "5s" });
    assert.equal(b.noWait, true);
    assert.equal(b.waitMs, undefined);
    const c = await runOptions(["--release", "--", "x"], { LEADER_RUN_NO_RELEASE: "1" });
    assert.equal(c.release, true);
  });

  it("empty variables count as unset", async () => {
    const o = await runOptions(["--", "x"], { LEADER_RUN_LEASE_DURATION: "", LEADER_RUN_LOCK: "", LEADER_RUN_NAME: "" });
    assert.equal(o.leaseDurationMs, 15_000);
    assert.equal(o.lock.kind, "file");
    assert.equal(o.name, "x");
  });

  it("unrelated LEADER_RUN_* variables are ignored (the child's own, like LEADER_RUN_FENCING_TOKEN)", async () => {
    const o = await runOptions(["--", "x"], { LEADER_RUN_SOMETHING: "1", LEADER_RUN_FENCING_TOKEN: "7" });
    assert.equal(o.name, "x");
  });

  it("inside a leader-run child, the inherited LEADER_RUN_NAME and LEADER_RUN_IDENTITY are not read, LEADER_RUN_LOCK is", async () => {
    const o = await runOptions(["--", "inner", "job"], {
      LEADER_RUN_FENCING_TOKEN: "7",
      LEADER_RUN_NAME: "outer-lease",
      LEADER_RUN_IDENTITY: "outer_12345678",
      LEADER_RUN_LOCK: "file:/outer",
    });
    assert.equal(o.name, "inner-job");
    assert.notEqual(o.identity, "outer_12345678");
    assert.equal(o.lock.kind === "file" ? o.lock.dir : "", "/outer");
  });

  it("env names follow LEADER_RUN_<UPPER_SNAKE>", () => {
    assert.equal(envName("lease-duration"), "LEADER_RUN_LEASE_DURATION");
    assert.equal(envName("no-wait"), "LEADER_RUN_NO_WAIT");
  });
});

describe("help, version, completion", () => {
  const commandsOf = (cmd: "run" | "status" | "release"): string[] => Object.keys(OPTIONS).filter((f) => OPTIONS[f]?.commands.includes(cmd));

  for (const [cmd, argv] of [["run", ["--help"]], ["status", ["status", "--help"]], ["release", ["release", "-h"]]] as const) {
    it(`${argv.join(" ")} lists every option of ${cmd} with its default and env twin, and examples`, async () => {
      const r = await runMain([...argv]);
      assert.equal(r.code, 0);
      assert.equal(r.stderr, "");
      const text = r.stdout.replace(/\s+/g, " ");
      for (const flag of commandsOf(cmd)) {
        assert.ok(text.includes(`--${flag} `), `--${flag} missing`);
        assert.ok(text.includes(`[env: ${envName(flag)}]`), `${envName(flag)} missing`);
        const d = OPTIONS[flag]?.default;
        if (d) assert.ok(text.includes(`[default: ${d}]`), `default of --${flag} missing`);
      }
      assert.match(r.stdout, /Examples:/);
      for (const other of Object.keys(OPTIONS).filter((f) => !OPTIONS[f]?.commands.includes(cmd))) {
        assert.ok(!text.includes(`--${other} `), `--${other} should not be listed for ${cmd}`);
      }
    });
  }

  it("the run help documents the derived kill grace rule and the exit codes", async () => {
    const text = (await runMain(["--help"])).stdout.replace(/\s+/g, " ");
    assert.ok(text.includes("min(10s, (lease-duration - renew-deadline) / 2)"));
    assert.ok(text.includes("76 leadership lost"));
  });

  it("--version prints the package version", async () => {
    const r = await runMain(["--version"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^\d+\.\d+\.\d+.*\n$/);
  });

  it("completion prints the script of the shell asked for, and completion --help prints help", async () => {
    for (const shell of ["bash", "zsh", "fish"]) {
      const r = await runMain(["completion", shell]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`completion for ${shell}`));
      assert.match(r.stdout, /leader-run __complete --/);
    }
    assert.match((await runMain(["completion"], { SHELL: "/usr/bin/fish" })).stdout, /completion for fish/);
    assert.match((await runMain(["completion"], { SHELL: "/bin/zsh" })).stdout, /^#compdef leader-run/);
    const help = await runMain(["completion", "--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^leader-run completion \[bash\|zsh\|fish\]/);
    const bad = await runMain(["completion", "tcsh"]);
    assert.equal(bad.code, 64);
  });

  it("completions: subcommands, each command's options, an option's values, nothing of ours after --", async () => {
    const complete = async (...words: string[]): Promise<string[]> => {
      const r = await runMain(["__complete", "--", ...words]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.split("\n").filter((l) => l !== "");
    };
    assert.deepEqual(await complete("sta"), ["status"]);
    assert.deepEqual(await complete("--restart", ""), ["never", "on-failure", "always"]);
    assert.deepEqual(await complete("--restart", "on"), ["on-failure"]);
    assert.deepEqual(await complete("--log-level", ""), ["debug", "info", "warn", "error"]);
    assert.deepEqual(await complete("status", "--output", ""), ["text", "json"]);
    assert.ok((await complete("--no-w")).includes("--no-wait"));
    assert.ok((await complete("--min")).includes("--min-hold"));
    assert.ok(!(await complete("status", "--")).includes("--restart"), "run-only options are not offered to status");
    assert.ok((await complete("release", "--f")).includes("--force"));
    assert.deepEqual(await complete("--", "ech"), [], "after -- the words are the command's");
    assert.deepEqual(await complete("--no-wait", "--", "ls", "--re"), []);
    assert.deepEqual(await complete("--lock", ""), [], "a free-form value: the shell completes file names");
    assert.deepEqual(await complete("--name", "status", "--q"), ["--quiet"], "a value is not taken for a subcommand");
    assert.deepEqual(await complete("completion", ""), ["bash", "zsh", "fish"]);
  });

  it("the bash script completes through the real bash", async () => {
    const script = (await runMain(["completion", "bash"])).stdout;
    // The script calls `leader-run`: point it at this test's entry point.
    const shim = `leader-run() { node --import tsx ${JSON.stringify(CLI)} "$@"; }`;
    const probe = `${shim}\n${script}\nCOMP_WORDS=(leader-run --restart "")\nCOMP_CWORD=2\n_leader_run_complete\nprintf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = spawnSync("bash", ["-c", probe], { encoding: "utf8", cwd: ROOT, timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.split("\n").filter((l) => l !== ""), ["never", "on-failure", "always"]);
  });

  it("help, run, -V, -q and -v are understood as users type them", async () => {
    const help = await runMain(["help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^leader-run \[options\] -- <command>/);
    const helpStatus = await runMain(["help", "status"]);
    assert.match(helpStatus.stdout, /^leader-run status/);
    assert.match((await runMain(["-V"])).stdout, /^\d+\.\d+\.\d+/);
    const run = await parseCommandLine(["run", "-q", "--", "true"], { env: {}, cwd: "/tmp" });
    assert.equal(run.command, "run");
    if (run.command !== "run") return;
    assert.deepEqual(run.options.command, ["true"]);
    assert.equal(run.options.quiet, true);
    assert.equal(run.options.logLevel, "warn");
    const verbose = await parseCommandLine(["-v", "--", "true"], { env: {}, cwd: "/tmp" });
    assert.equal(verbose.command === "run" && verbose.options.logLevel, "debug");
    const both = await runMain(["-v", "-q", "--", "true"]);
    assert.equal(both.code, 64);
    assert.match(both.stderr, /contradict/);
  });

  it("--help lists the lock backends this build has: file, Redis, Kubernetes, etcd, PostgreSQL", async () => {
    const text = (await runMain(["--help"])).stdout;
    for (const scheme of ["file:", "redis://", "rediss://", "redis+sentinel://", "redis+cluster://", "kubernetes:", "etcd://", "etcds://", "postgres://"]) {
      assert.ok(text.includes(scheme), `--help does not name ${scheme}:\n${text}`);
    }
  });

  it("usage errors are JSON under --log-format json, and a mistyped subcommand keeps the words after --", async () => {
    const r = await runMain(["--log-format", "json", "--bogus", "--", "true"]);
    assert.equal(r.code, 64);
    const line = JSON.parse(r.stderr) as Record<string, unknown>;
    assert.equal(line.event, "usage_error");
    assert.equal(line.level, "error");
    assert.equal(line.exit_code, 64);
    assert.match(String(line.msg), /unknown option --bogus/);
    const typo = await runMain(["stauts", "--", "true"]);
    assert.match(typo.stderr, /-- stauts true\n$/);
  });
});
