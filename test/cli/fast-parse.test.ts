import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { CliError } from "../../src/cli/errors.js";
import { OPTIONS, envName, parseWith } from "../../src/cli/options.js";
import type { ParseContext, ParsedCommandLine } from "../../src/cli/options.js";

// The fast path (yargs-parser driven by the option table) against yargs itself: for every command line
// of the corpus, the same ParsedCommandLine or the same error (class, exit code, message) — or the
// fast path declines and yargs answers. Ordinary command lines must not be declined, or start-up
// would silently pay for yargs again.

type Outcome = { ok: ParsedCommandLine } | { error: { name: string; exitCode: number | undefined; message: string } } | { declined: true };

/** The default identity ends in 8 random hex digits per call; everything else must match exactly. */
function normalise(parsed: ParsedCommandLine): ParsedCommandLine {
  if (parsed.command === "output" || !parsed.options.identityDerived) return parsed;
  return { ...parsed, options: { ...parsed.options, identity: parsed.options.identity.replace(/_[0-9a-f]{8}$/, "_<random>") } } as ParsedCommandLine;
}

async function outcome(engine: "fast" | "yargs", args: readonly string[], ctx: ParseContext): Promise<Outcome> {
  try {
    const parsed = await parseWith(engine, args, ctx);
    return parsed === undefined ? { declined: true } : { ok: normalise(parsed) };
  } catch (e) {
    if (!(e instanceof Error)) throw e;
    return { error: { name: e.name, exitCode: e instanceof CliError ? e.exitCode : undefined, message: e.message } };
  }
}

interface Case {
  args: string[];
  env?: NodeJS.ProcessEnv;
  /** Lines with help/version/completion words may be declined; all others must not be. */
  mayDecline?: boolean;
}

const COMMANDS: string[][] = [[], ["run"], ["status"], ["release"], ["step-down"]];

/** A valid and an invalid value of each string option, for its own command. */
const SAMPLE_VALUES: Record<string, [string, string]> = {
  lock: ["file:/tmp/locks", "nope:"],
  name: ["nightly-job", "Bad_Name"],
  identity: ["web-1", "a\nb"],
  namespace: ["prod", "Prod!"],
  kubeconfig: ["/etc/kube.conf", ""],
  "tls-ca": ["ca.pem", ""],
  "tls-cert": ["cert.pem", ""],
  "tls-key": ["key.pem", ""],
  "etcd-password-file": ["pw.txt", ""],
  "pg-table": ["app.leases", "Bad-Table"],
  "lease-duration": ["30s", "1x"],
  "renew-deadline": ["5s", "-1s"],
  "retry-period": ["1s", "0"],
  "min-hold": ["30s", "later"],
  wait: ["0", "5"],
  "conflict-exit-code": ["3", "256"],
  "kill-signal": ["INT", "STOP"],
  "kill-grace": ["1s", "9s"],
  restart: ["on-failure", "sometimes"],
  "restart-delay": ["0", "1000h"],
  "on-lost": ["campaign", "panic"],
  "on-started-leading": ["echo hi", ""],
  "on-stopped-leading": ["echo bye", ""],
  "on-new-leader": ["echo new", ""],
  "hook-timeout": ["5s", "0"],
  http: ["127.0.0.1:0", "localhost"],
  "healthz-timeout": ["10s", "x"],
  output: ["json", "yaml"],
  "log-format": ["json", "xml"],
  "log-level": ["debug", "trace"],
};

const camel = (flag: string): string => flag.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

function corpus(): Case[] {
  const cases: Case[] = [];
  const add = (args: string[], extra: Omit<Case, "args"> = {}): void => {
    cases.push({ args, ...extra });
  };
  // Every option of the table in every spelling under its own first command; under the other
  // commands (where it is unknown, or known the same way) with and without a value.
  for (const [flag, spec] of Object.entries(OPTIONS)) {
    const values = spec.type === "string" ? SAMPLE_VALUES[flag] : undefined;
    assert.ok(spec.type === "boolean" || values, `a sample value for --${flag}`);
    const own = spec.commands[0] === "run" ? [] : [spec.commands[0] ?? "status"];
    const forms: string[][] = [];
    if (values) {
      for (const v of values) forms.push([`--${flag}`, v], [`--${flag}=${v}`]);
      for (const c of spec.choices ?? []) forms.push([`--${flag}`, c]);
      forms.push([`--${flag}`, "-x"], [`--${flag}`, "--wait", "5s"], [`--${flag}`, "-5s"], [`--${camel(flag)}`, values[0]], [`--${flag}`, values[0], `--${flag}`, values[1]]);
    } else {
      forms.push([`--${flag}`], [`--${flag}=false`], [`--${flag}=true`], [`--${flag}=yes`], [`--no-${flag}`], [`--${flag}`, "extra"], [`--${camel(flag)}`]);
      if (spec.short) forms.push([`-${spec.short}`], [`-${spec.short}${spec.short}`], [`-${spec.short}=false`]);
    }
    for (const form of forms) add([...own, ...form, "--", "node", "cron.js"]);
    // A value-taking option last, with nothing after it, and before `--`.
    if (values) add([...own, `--${flag}`]);
    for (const command of COMMANDS) {
      if (command.join() === own.join()) continue;
      add([...command, ...(values ? [`--${flag}`, values[0]] : [`--${flag}`]), "--", "x"]);
      if (values) add([...command, "--name", "n", `--${flag}`]);
    }
    // Before the command word (yargs picks the command from the top-level parse).
    for (const command of COMMANDS.slice(2)) add([...(values ? [`--${flag}`, values[0]] : [`--${flag}`]), ...command, "--", "x"]);
    // The environment twin, valid and invalid, alone and against the flag.
    const twin = envName(flag);
    for (const command of [[], own.length > 0 ? own : ["status"]]) {
      const env = values ? [values[0], values[1], ""] : ["1", "false", "maybe"];
      for (const v of env) add([...command, "--name", "twin-test", "--", "x"], { env: { [twin]: v } });
      if (values) add([...command, `--${flag}`, values[0], "--", "x"], { env: { [twin]: values[1] } });
    }
  }

  // Hand-picked edges: short flags, `--`, unknown options, positionals, help, version, completion.
  const edges: string[][] = [
    [], ["--"], ["--", ""], ["--", "", ""], ["--", "--"], ["--", "--", "x"], ["--", "-q"], ["--", "--help"], ["--", "help"],
    ["-q", "--", "x"], ["-v", "--", "x"], ["-qv", "--", "x"], ["-vq", "--", "x"], ["-q", "-v", "--", "x"], ["-qq", "--", "x"],
    ["-x", "--", "x"], ["-qx", "--", "x"], ["-5", "--", "x"], ["-5s", "--", "x"], ["-", "--", "x"], ["---", "--", "x"], ["--=x", "--", "x"],
    ["--bogus", "--", "x"], ["--bogus=1", "--", "x"], ["--bogus", "value", "--", "x"], ["--foo-bar", "--", "x"], ["--fooBar", "--", "x"],
    ["--fooBar", "-z", "--", "x"], ["--foo.bar", "--", "x"], ["--no-bogus", "--", "x"], ["--a", "--b", "--", "x"], ["-abc", "--", "x"],
    ["--show-hidden", "--", "x"], ["--$0", "--", "x"], ["--__proto__", "--", "x"],
    ["--no-wait", "--", "x"], ["--no-wait", "--wait", "5s", "--", "x"], ["--wait", "--no-wait", "--", "x"], ["--wait", "-5s", "--", "x"],
    ["--wait", "--", "x"], ["--name", "--", "x"], ["--name", "a", "--name", "b", "--", "x"], ["--quiet", "--verbose", "--", "x"],
    ["--release", "--no-release", "--", "x"], ["--no-release", "--min-hold", "5s", "--", "x"], ["--release=false", "--", "x"],
    ["echo", "hi"], ["echo", "--", "hi"], ["run"], ["run", "--", "x"], ["run", "echo", "--", "x"], ["run", "run", "--", "x"], ["run", "status"],
    ["status"], ["status", "extra"], ["status", "--", "node", "cron.js"], ["status", "--name", "x"], ["status", "--name", "x", "--wait", "5s"],
    ["status", "--name", "x", "--watch"], ["status", "--watch", "--name", "x"], ["status", "--watch", "x"], ["release", "--name", "x"],
    ["release", "--name", "x", "--force"], ["release", "--force", "--", "x"], ["step-down", "--name", "x", "--output", "json"],
    ["step-down", "--force", "--name", "x"], ["status", "release", "--name", "x"], ["status", "status", "--name", "x"],
    ["--watch", "status", "--name", "x"], ["--output", "json", "status", "--name", "x"], ["--shell", "status", "--name", "x"],
    ["--no-wait", "status", "--name", "x"], ["--wait", "status", "--name", "x"], ["--name", "status", "--", "x"], ["-q", "status", "--name", "x"],
    ["status", "-q", "--name", "x", "--log-format", "json"], ["release", "-v", "--name", "x", "--identity", "me"], ["step-down", "--", ""],
    ["--lock", "redis://u:hunter2@h:6379", "--", "x"], ["--lock", "k8s:", "--namespace", "prod", "--", "x"], ["--lock", "etcds://h", "--tls-ca", "ca.pem", "--", "x"],
    ["--lock", "postgres://h/db", "--pg-table", "s.t", "--", "x"], ["--shell", "--", "echo", "$HOME"], ["--http", ":0", "--", "x"],
    ["--lease-duration", "30s", "--renew-deadline", "20s", "--kill-grace", "5s", "--", "x"], ["--kill-signal", "9", "--", "x"],
    ["--lease-duration=", "--", "x"], ["--name=", "--", "x"], ["--name=a=b", "--", "x"], ["--log-level", "debug", "--quiet", "--", "x"],
  ];
  for (const e of edges) add(e);
  const declining: string[][] = [
    ["--help"], ["-h"], ["-hq"], ["-qh"], ["--help", "--", "x"], ["--version"], ["-V"], ["-Vq"], ["--version=false", "--", "x"], ["--help=false", "--", "x"],
    ["help"], ["help", "status"], ["help", "run"], ["help", "bogus"], ["help", "status", "extra"], ["-q", "help"], ["status", "help"], ["status", "--help"],
    ["status", "-h"], ["release", "--version"], ["completion"], ["completion", "bash"], ["completion", "zsh"], ["completion", "tcsh"], ["completion", "--help"],
    ["completion", "bash", "extra"], ["-q", "completion", "fish"], ["status", "completion"], ["--get-yargs-completions", "a"], ["--get-yargs-completions"],
    ["--bogus", "--help"], ["--name", "--help"], ["--name", "-h", "--", "x"], ["run", "help"], ["echo", "help"],
    ["--_", "--", "x"], ["--_", "y", "--", "x"], ["--_=", "--", "x"],
    ["__complete", "--", "--re"], ["__complete", "--", "status", "--out"], ["__complete", "--", "--restart", ""],
  ];
  for (const e of declining) add(e, { mayDecline: true });

  // Random combinations (seeded) of pieces, to reach orders nobody writes by hand.
  const pieces: string[][] = [
    ["-q"], ["-v"], ["-qv"], ["--no-wait"], ["--wait", "5s"], ["--wait=0"], ["--name", "job"], ["--name=job"], ["--lock", "file:/tmp/l"],
    ["--output", "json"], ["--watch"], ["--force"], ["--shell"], ["--release"], ["--no-release"], ["--restart", "always"], ["--on-lost", "campaign"],
    ["--log-format", "json"], ["--log-level", "warn"], ["--bogus"], ["-z"], ["--fooBar"], ["--wait"], ["--name"], ["status"], ["release"],
    ["step-down"], ["run"], ["extra"], ["--"], ["cmd"], ["--lease-duration", "20s"], ["--kill-grace", "1s"], ["--identity", "me"], ["-5s"],
    ["--min-hold", "1s"], ["--http", ":0"], ["--conflict-exit-code", "0"], ["--leaseDuration", "20s"], ["--no-bogus"], ["="], ["-"],
  ];
  let seed = 1;
  const next = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let i = 0; i < 400; i++) {
    const args: string[] = [];
    const count = 1 + next(6);
    for (let j = 0; j < count; j++) args.push(...(pieces[next(pieces.length)] ?? []));
    add(args);
  }
  return cases;
}

describe("fast path ≡ yargs (differential)", () => {
  const cases = corpus();
  // yargs takes tens of milliseconds per command line on a loaded machine: the context without a
  // version (where -V and --version are unknown options) gets a tenth of the corpus.
  const contexts: { label: string; ctx: ParseContext; cases: Case[] }[] = [
    { label: "as the bin calls it", ctx: { cwd: "/srv/app", version: "1.2.3", width: 100 }, cases },
    { label: "without a version", ctx: { cwd: "/srv/app", width: 80 }, cases: cases.filter((c, i) => i % 10 === 0 || c.mayDecline) },
  ];
  for (const { label, ctx, cases } of contexts) {
    it(`${cases.length} command lines, ${label}: same result or same error; ordinary ones never declined`, { timeout: 600_000 }, async () => {
      let declined = 0;
      const mismatches: string[] = [];
      for (const c of cases) {
        const env = { HOSTNAME: "ignored", ...(c.env ?? {}) };
        const full = { ...ctx, env };
        const fast = await outcome("fast", c.args, full);
        if ("declined" in fast) {
          declined++;
          if (!c.mayDecline) mismatches.push(`declined an ordinary line: ${JSON.stringify(c.args)}`);
          continue;
        }
        const slow = await outcome("yargs", c.args, full);
        try {
          assert.deepStrictEqual(fast, slow);
        } catch {
          mismatches.push(`${JSON.stringify(c.args)} env ${JSON.stringify(c.env ?? {})}\n  fast:  ${JSON.stringify(fast)}\n  yargs: ${JSON.stringify(slow)}`);
        }
      }
      assert.deepEqual(mismatches.slice(0, 20), [], `${mismatches.length} mismatches`);
      const mayDecline = cases.filter((c) => c.mayDecline).length;
      assert.ok(declined > 0 && declined <= mayDecline, `declined ${declined} of ${mayDecline} help/version/completion lines`);
    });
  }

  it("known difference: option names of Object.prototype crash yargs' validation; the fast path calls them unknown", async () => {
    const ctx = { cwd: "/srv/app", version: "1.2.3", width: 100, env: {} };
    for (const name of ["constructor", "toString", "hasOwnProperty", "valueOf"]) {
      const args = [`--${name}`, "--", "x"];
      assert.deepStrictEqual(await outcome("fast", args, ctx), {
        error: { name: "UsageError", exitCode: 64, message: `unknown option --${name} (see leader-run --help; the command goes after --)` },
      });
      const slow = await outcome("yargs", args, ctx);
      assert.ok("error" in slow && slow.error.name === "TypeError", `${name}: ${JSON.stringify(slow)}`);
    }
  });

  it("the auto engine gives yargs' output for help and version", async () => {
    for (const args of [["--help"], ["-V"], ["status", "--help"], ["help", "release"], ["completion", "fish"]]) {
      const ctx = { cwd: "/srv/app", version: "1.2.3", width: 100, env: {} };
      assert.deepStrictEqual(await parseWith("auto", args, ctx), await parseWith("yargs", args, ctx), JSON.stringify(args));
      assert.equal((await parseWith("auto", args, ctx))?.command, "output");
    }
  });
});
