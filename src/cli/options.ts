import { resolve as resolvePath } from "node:path";
import type { Argv } from "yargs";
import type { Options as ParserOptions } from "yargs-parser";
import { parseSignal as parseSignalName } from "../child/process-group.js";
import { RESTART_MODES } from "../child/restart.js";
import type { RestartMode } from "../child/restart.js";
import { JITTER_FACTOR } from "../election/config.js";
import { effectiveLeaseDurationMs } from "../election/term.js";
import { parseHttpAddress } from "../http/address.js";
import type { HttpAddress } from "../http/address.js";
import { DEFAULT_LOCK_URL, parseLockUrl } from "../locks/url.js";
import type { LockSpec } from "../locks/url.js";
import { DurationSyntaxError, formatDuration, parseDuration } from "./duration.js";
import { UsageError } from "./errors.js";
import { LOG_FORMATS, LOG_LEVELS, effectiveLevel } from "./log.js";
import type { LogFormat, LogLevel } from "./log.js";
import { HOOK_NAMES, type HookName } from "./hooks.js";
import { COMPLETE_COMMAND, COMPLETION_SHELLS, completionScript, completions, shellFromEnv } from "./completion.js";
import { commandSlug, defaultIdentity, leaseNameProblem, readableSlug } from "./slug.js";
import { fastParse } from "./fast-parse.js";
import type { FastParseSpec } from "./fast-parse.js";

/**
 * The command line of `leader-run`: yargs defines the flags, help, examples and completion; this
 * module then resolves every value (flag, else `LEADER_RUN_*` variable, else default) and validates
 * all of it before anything starts, so every mistake ends in one line and exit 64.
 *
 * yargs itself is loaded only when needed (help, version, completion, or a command line the fast path
 * declines): ordinary command lines are tokenised by fast-parse.ts with yargs-parser, from the same
 * option table and parser configuration, because loading yargs was most of leader-run's start-up.
 *
 * Environment twins are resolved here rather than with yargs' `.env()`: under strict mode `.env()`
 * rejects any unknown `LEADER_RUN_*` variable, including `LEADER_RUN_FENCING_TOKEN` that leader-run
 * itself exports to its child, which would break a leader-run started from inside a guarded command;
 * and resolving here lets error messages name where a bad value came from.
 */

export const RESTART_POLICIES = RESTART_MODES;
export type RestartPolicy = RestartMode;
export const ON_LOST_POLICIES = ["exit", "campaign"] as const;
export type OnLostPolicy = (typeof ON_LOST_POLICIES)[number];
export const OUTPUT_FORMATS = ["text", "json"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export const ENV_PREFIX = "LEADER_RUN_";

export const DEFAULTS = {
  lock: DEFAULT_LOCK_URL,
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
  conflictExitCode: 75,
  killSignal: "SIGTERM",
  restart: "never",
  restartDelayMs: 1_000,
  healthzTimeoutMs: 20_000,
  hookTimeoutMs: 30_000,
  onLost: "exit",
  logFormat: "text",
  logLevel: "info",
  /** Cap of the derived kill grace. */
  maxDerivedKillGraceMs: 10_000,
} as const;

/** Node's timers cannot wait longer than this (2^31-1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * The default `--kill-grace`: half the gap between the renew deadline and the lease duration, at most
 * 10s. The leader gives up at `renewDeadline`, the child must be dead by `renewDeadline + killGrace`,
 * and a follower may start at `leaseDuration`; the other half of the gap is margin for clock-rate
 * drift between hosts and for the SIGKILL and reaping themselves. 2.5s with the default timings.
 */
export function deriveKillGraceMs(leaseDurationMs: number, renewDeadlineMs: number): number {
  return Math.min(DEFAULTS.maxDerivedKillGraceMs, Math.max(0, (leaseDurationMs - renewDeadlineMs) / 2));
}

export type { HttpAddress };

/** What every command needs to find the lease. */
export interface LeaseTarget {
  lock: LockSpec;
  name: string;
  /** true when `name` was derived from the command line (print it so users can find the lease). */
  nameDerived: boolean;
  identity: string;
  identityDerived: boolean;
  namespace?: string;
  kubeconfig?: string;
  /** etcds:// only: PEM files. */
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** etcd only. */
  etcdPasswordFile?: string;
  /** PostgreSQL only: `[schema.]table` of the leases. */
  pgTable?: string;
  logFormat: LogFormat;
  /** Effective level (`--quiet` already applied). */
  logLevel: LogLevel;
  quiet: boolean;
  /** Non-fatal problems (e.g. a password on the command line) for the caller to log as `warning`. */
  warnings: string[];
}

/** The fully validated options of the run command; durations in milliseconds. */
export interface RunOptions extends LeaseTarget {
  /** The command and its arguments; with `shell`, the words joined by spaces form the script. */
  command: string[];
  shell: boolean;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** Give up campaigning after this long (exit `conflictExitCode`); undefined = forever. */
  waitMs: number | undefined;
  /** Hold the lease (running nothing) until this long after the command started; 0 = release at once. */
  minHoldMs: number;
  /** Lifecycle hook commands (shell command lines), by hook name. */
  hooks: Partial<Record<HookName, string>>;
  hookTimeoutMs: number;
  /** Try once (also set by `--wait 0`). */
  noWait: boolean;
  conflictExitCode: number;
  killSignal: NodeJS.Signals;
  killGraceMs: number;
  killGraceDerived: boolean;
  restart: RestartPolicy;
  restartDelayMs: number;
  onLost: OnLostPolicy;
  /** Release the lease on a clean stop. */
  release: boolean;
  http: HttpAddress | undefined;
  /** With `--http`: how long past the lease duration without a renewal before /healthz fails. */
  healthzTimeoutMs: number;
}

export interface StatusOptions extends LeaseTarget {
  output: OutputFormat;
  /** Keep printing changes until interrupted. */
  watch: boolean;
}

export interface ReleaseOptions extends LeaseTarget {
  force: boolean;
  output: OutputFormat;
}

export interface StepDownOptions extends LeaseTarget {
  output: OutputFormat;
}

export type ParsedCommandLine =
  | { command: "run"; options: RunOptions }
  | { command: "step-down"; options: StepDownOptions }
  | { command: "status"; options: StatusOptions }
  | { command: "release"; options: ReleaseOptions }
  /** --help, --version, completion: print `text` on stdout and exit 0. */
  | { command: "output"; text: string };

export interface ParseContext {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  version?: string;
  /** Help width; defaults to the terminal's, at most 100. */
  width?: number;
}

type CommandName = "run" | "status" | "release" | "step-down";

interface OptionSpec {
  type: "string" | "boolean";
  describe: string;
  /** Shown as `[default: …]`. */
  default?: string;
  group: string;
  commands: readonly CommandName[];
  /** A one-letter alias (`-q`). */
  short?: string;
  /** Values offered by shell completion. */
  choices?: readonly string[];
}

const ALL: readonly CommandName[] = ["run", "status", "release", "step-down"];
const RUN: readonly CommandName[] = ["run"];
const G_LEASE = "Lease:";
const G_TIMING = "Timing:";
const G_CHILD = "Command:";
const G_OUTPUT = "Output:";
const G_HOOKS = "Hooks:";

/**
 * The lock locations this build can open, for --help and completion (a scheme that parses but whose
 * backend is not built yet is refused by the factory and not advertised here).
 */
export const BUILT_LOCKS = ["file:[dir] (this host only)", "redis://", "rediss://", "redis+sentinel://", "redis+cluster://", "kubernetes: (k8s:)", "etcd://", "etcds://", "postgres://"] as const;

/** Every option; the env twin of `--foo-bar` is `LEADER_RUN_FOO_BAR`. */
export const OPTIONS: Readonly<Record<string, OptionSpec>> = {
  lock: {
    type: "string",
    group: G_LEASE,
    commands: ALL,
    default: DEFAULT_LOCK_URL,
    describe:
      `where the lease lives: ${BUILT_LOCKS.join(", ")}; pass passwords through the env twin, not the command line`,
  },
  name: {
    type: "string",
    group: G_LEASE,
    commands: ALL,
    default: "slug of the command",
    describe: "lease name (a Kubernetes object name); the default is the same for the same command on every host",
  },
  identity: {
    type: "string",
    group: G_LEASE,
    commands: ALL,
    default: "<POD_NAME or hostname>_<random>",
    describe: "this process's holder identity; must be unique per process",
  },
  namespace: { type: "string", group: G_LEASE, commands: ALL, default: "in-cluster namespace or kubeconfig context", describe: "Kubernetes only: namespace of the Lease" },
  kubeconfig: { type: "string", group: G_LEASE, commands: ALL, default: "in-cluster, $KUBECONFIG, ~/.kube/config", describe: "Kubernetes only: kubeconfig file" },
  "tls-ca": { type: "string", group: G_LEASE, commands: ALL, default: "system roots", describe: "etcds:// only: PEM file of the CA that signed the server certificates" },
  "tls-cert": { type: "string", group: G_LEASE, commands: ALL, describe: "etcds:// only: PEM client certificate (with --tls-key)" },
  "tls-key": { type: "string", group: G_LEASE, commands: ALL, describe: "etcds:// only: PEM private key of --tls-cert" },
  "etcd-password-file": {
    type: "string",
    group: G_LEASE,
    commands: ALL,
    default: "$LEADER_RUN_ETCD_PASSWORD",
    describe: "etcd only: file holding the password of the URL's user (etcd://user@host); or set LEADER_RUN_ETCD_PASSWORD",
  },
  "pg-table": { type: "string", group: G_LEASE, commands: ALL, default: "leader_run_leases", describe: "PostgreSQL only: [schema.]table of the leases (see docs/postgres.md)" },
  "lease-duration": {
    type: "string",
    group: G_TIMING,
    commands: RUN,
    default: "15s",
    describe: "how long others wait after the last renewal before taking over (Go durations: 1m30s, 500ms; a bare number is seconds)",
  },
  "renew-deadline": { type: "string", group: G_TIMING, commands: RUN, default: "10s", describe: "the leader stops (and stops the command) if it could not renew for this long" },
  "retry-period": { type: "string", group: G_TIMING, commands: RUN, default: "2s", describe: "time between acquire and renew attempts" },
  "min-hold": {
    type: "string",
    group: G_TIMING,
    commands: RUN,
    default: "0",
    describe: "keep holding the lease (running nothing) until this long after the command started, so the same cron slot on a host whose clock or schedule lags is skipped (e.g. 30s)",
  },
  wait: { type: "string", group: G_TIMING, commands: RUN, default: "forever", describe: "give up campaigning after this long and exit 75 (--wait 0 = --no-wait)" },
  "no-wait": { type: "boolean", group: G_TIMING, commands: RUN, default: "false", describe: "try once: if someone else leads, exit 75 at once (flock -n)" },
  "conflict-exit-code": { type: "string", group: G_TIMING, commands: RUN, default: "75", describe: "exit code when the lease was not acquired (flock -E)" },
  "kill-signal": { type: "string", group: G_CHILD, commands: RUN, choices: ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGKILL"], default: "SIGTERM", describe: "first signal sent to the command's process group when leadership ends" },
  "kill-grace": {
    type: "string",
    group: G_CHILD,
    commands: RUN,
    default: "min(10s, (lease-duration - renew-deadline) / 2) = 2.5s",
    describe: "time between --kill-signal and SIGKILL; renew-deadline + kill-grace must stay below lease-duration so the command is gone before anyone else can take over",
  },
  restart: { type: "string", group: G_CHILD, commands: RUN, choices: RESTART_MODES, default: "never", describe: "when the command exits while we still lead: never | on-failure | always" },
  "restart-delay": { type: "string", group: G_CHILD, commands: RUN, default: "1s", describe: "first restart delay, doubling up to 5m, reset after a run of 60s or more; 0 restarts at once" },
  "on-lost": { type: "string", group: G_CHILD, commands: RUN, choices: ON_LOST_POLICIES, default: "exit", describe: "after leadership is lost and the command stopped: exit (76) | campaign again" },
  release: { type: "boolean", group: G_CHILD, commands: RUN, default: "true", describe: "release the lease on a clean stop so a standby takes over at once" },
  "no-release": { type: "boolean", group: G_CHILD, commands: RUN, default: "false", describe: "leave the lease to expire instead of releasing it" },
  shell: { type: "boolean", group: G_CHILD, commands: RUN, default: "false", describe: "run the command through /bin/sh -c (the words are joined by spaces)" },
  "on-started-leading": {
    type: "string",
    group: G_HOOKS,
    commands: RUN,
    default: "none",
    describe: "shell command run (not awaited) when we become leader; gets LEADER_RUN_NAME, LEADER_RUN_IDENTITY, LEADER_RUN_FENCING_TOKEN",
  },
  "on-stopped-leading": {
    type: "string",
    group: G_HOOKS,
    commands: RUN,
    default: "none",
    describe: "shell command run after leadership ended, the command was stopped and the lease released or left",
  },
  "on-new-leader": {
    type: "string",
    group: G_HOOKS,
    commands: RUN,
    default: "none",
    describe: "shell command run when the holder changes (us included); LEADER_RUN_NEW_LEADER names it",
  },
  "hook-timeout": {
    type: "string",
    group: G_HOOKS,
    commands: RUN,
    default: "30s",
    describe: "hooks running longer are killed (SIGTERM, then SIGKILL 1s later); hooks never delay stopping the command or releasing the lease",
  },
  http: {
    type: "string",
    group: G_OUTPUT,
    commands: RUN,
    default: "off",
    describe: "serve /healthz, /leader and /metrics on host:port (:port = every interface, port 0 = any free port)",
  },
  "healthz-timeout": {
    type: "string",
    group: G_OUTPUT,
    commands: RUN,
    default: "20s",
    describe: "with --http: /healthz fails once we lead but have not renewed for this long beyond the lease duration (client-go's HealthzAdaptor)",
  },
  output: { type: "string", group: G_OUTPUT, commands: ["status", "release", "step-down"], choices: OUTPUT_FORMATS, default: "text", describe: "text | json" },
  watch: {
    type: "boolean",
    group: G_OUTPUT,
    commands: ["status"],
    default: "false",
    describe: "keep watching: print one line (or JSON object) per change of holder or state until interrupted",
  },
  force: { type: "boolean", group: G_LEASE, commands: ["release"], default: "false", describe: "release the lease whoever holds it" },
  "log-format": { type: "string", group: G_OUTPUT, commands: ALL, choices: LOG_FORMATS, default: "text", describe: "text | json (JSON lines); logs go to stderr" },
  "log-level": { type: "string", group: G_OUTPUT, commands: ALL, choices: LOG_LEVELS, default: "info", describe: "debug | info | warn | error" },
  quiet: {
    type: "boolean",
    group: G_OUTPUT,
    commands: ALL,
    short: "q",
    default: "false",
    describe: "cron mode: print nothing for a normal run or a normal skip (not acquired); warnings and errors still print",
  },
  verbose: { type: "boolean", group: G_OUTPUT, commands: ALL, short: "v", default: "false", describe: "log debug lines too (= --log-level debug)" },
};

export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replace(/-/g, "_");
}

/**
 * Inside a command started by leader-run these variables describe the *outer* lease; read as options
 * they would make a nested leader-run share the outer identity (two holders of one identity) or
 * campaign for the lease its own parent holds. They are ignored there; pass flags instead.
 */
const CHILD_MARKER = "LEADER_RUN_FENCING_TOKEN";
const INHERITED_FROM_PARENT = new Set(["name", "identity"]);

const BIN = "leader-run";

interface YargsOption {
  type: "string" | "boolean";
  alias?: string;
  describe: string;
  defaultDescription?: string;
  group: string;
  global: boolean;
  requiresArg?: boolean;
}

function options(flags: readonly string[]): Record<string, YargsOption> {
  const out: Record<string, YargsOption> = {};
  for (const flag of flags) {
    const spec = OPTIONS[flag];
    if (!spec) continue;
    const o: (typeof out)[string] = {
      type: spec.type,
      describe: `${spec.describe} [env: ${envName(flag)}]`,
      group: spec.group,
      global: false,
    };
    // The next word is the value even when it starts with "-" (`--wait -5s` is a negative duration,
    // not the short options -5 and -s).
    if (spec.type === "string") o.requiresArg = true;
    if (spec.default !== undefined) o.defaultDescription = spec.default;
    if (spec.short !== undefined) o.alias = spec.short;
    out[flag] = o;
  }
  return out;
}

function flagsFor(command: CommandName): string[] {
  return Object.keys(OPTIONS).filter((f) => OPTIONS[f]?.commands.includes(command));
}

// Paragraphs: yargs wraps them to the terminal width.
const RUN_EPILOGUE = [
  "Timings: leaseDuration > renewDeadline > 1.2 x retryPeriod (client-go's rules), leaseDuration >= 1s, and renewDeadline + killGrace < leaseDuration, so the command is dead before another process may take over.",
  `Every option also reads ${ENV_PREFIX}<OPTION> (e.g. LEADER_RUN_LEASE_DURATION=30s); flags win, empty variables count as unset. Inside a command started by leader-run, LEADER_RUN_NAME and LEADER_RUN_IDENTITY describe the outer lease and are not read as options.`,
  "The command gets LEADER_RUN_NAME, LEADER_RUN_IDENTITY, LEADER_RUN_FENCING_TOKEN (the term) and LEADER_RUN_LOCK (password removed).",
  "Exit codes: the command's own (128+N if killed by signal N); 64 usage error; 69 backend refuses us; 70 internal error; 75 not acquired (--no-wait, --wait ran out); 76 leadership lost.",
].join("\n\n");

const STATUS_EPILOGUE = [
  "Exits 0 when a holder exists and its lease is live, 3 when nobody holds it (never created, released or expired). With --watch: runs until SIGINT or SIGTERM, then exits 0.",
  "\"Live\" compares the recorded renew time plus lease duration with this host's clock: an informational reading (clocks differ between hosts), not what the election itself relies on.",
].join("\n\n");

const RELEASE_EPILOGUE = [
  "Writes client-go's released record (empty holder, leaseDurationSeconds 1) with compare-and-swap, keeping the term count. Without --force it releases only when --identity holds the lease and no longer renews it (a live holder is refused: releasing it would let a standby start before its command is stopped; use step-down instead).",
  "Exits 0 when released or already free, 75 when refused (someone else or a live holder; use --force), 64 on usage errors.",
  "--force is for a holder that is gone for good, and warns when the lease is still live: a live leader-run holder notices the foreign record only on its next renewal, so a standby may start before that holder's command is stopped.",
].join("\n\n");

const STEP_DOWN_EPILOGUE = [
  "Records a hand-over request in the lease (its preferredHolder field, with compare-and-swap); the leader-run holding it sees the request at its next renewal, stops its command as on SIGTERM, releases the lease and exits 0 (or campaigns again with --on-lost campaign). Standbys see the record change, so none starts before that release: no overlap.",
  "Exits 0 once another holder leads (or the lease was released and nobody took it), 75 when the holder did not hand over in time (a client-go peer without coordinated election ignores the request), 3 when nobody holds the lease.",
].join("\n\n");

/** yargs-parser's configuration, for yargs and the fast path alike. */
const PARSER_CONFIGURATION = {
  "populate--": true,
  "boolean-negation": false,
  "duplicate-arguments-array": false,
  "dot-notation": false,
  "parse-numbers": false,
  "parse-positional-numbers": false,
  "greedy-arrays": false,
} as const;

/** The commands of buildParser whose options replace the top level's (yargs' `.command(…)`). */
const SUBCOMMANDS = ["status", "release", "step-down"] as const satisfies readonly CommandName[];

/**
 * What yargs hands yargs-parser for buildParser's configuration, derived from the same option
 * records: the command's options (the top level's are run's), plus the `--help`/`-h` and
 * `--version`/`-V` options yargs adds itself. yargs passes `requiresArg` as `narg: NaN` (one value).
 */
function parserOptionsFor(command: CommandName, ctx: ParseContext): ParserOptions & { key: Record<string, boolean> } {
  const out = {
    boolean: ["help"],
    string: [] as string[],
    alias: { help: ["h"] } as Record<string, string[]>,
    narg: {} as Record<string, number>,
    // Every declared key: yargs-parser lists them (and their camel-case twins) as known aliases.
    key: { help: true } as Record<string, boolean>,
  };
  if (ctx.version !== undefined) {
    out.boolean.push("version");
    out.alias.version = ["V"];
    out.key.version = true;
  }
  for (const [flag, o] of Object.entries(options(flagsFor(command)))) {
    const typed = o.type === "boolean" ? out.boolean : out.string;
    typed.push(flag);
    out.key[flag] = true;
    if (o.alias !== undefined) {
      out.alias[flag] = [o.alias];
      typed.push(o.alias);
      out.key[o.alias] = true;
    }
    if (o.requiresArg === true) out.narg[flag] = Number.NaN;
  }
  return { ...out, configuration: { ...PARSER_CONFIGURATION } };
}

function fastParseSpec(ctx: ParseContext): FastParseSpec<CommandName> {
  return {
    optionsFor: (command) => parserOptionsFor(command ?? "run", ctx),
    commands: SUBCOMMANDS,
    // yargs prints help for a trailing `help` word, and `completion`/`help` are its commands.
    declineWords: ["help", "completion"],
    declineKeys: ["help", "h", "version", "V", "get-yargs-completions", "getYargsCompletions"],
  };
}

async function buildParser(ctx: ParseContext): Promise<Argv> {
  const width = ctx.width ?? Math.min(100, process.stdout.columns || 100);
  // A chunk of its own in the bundle (package.json build:bin), evaluated only on this path.
  const { default: yargs } = await import("yargs");
  const y = yargs()
    .scriptName(BIN)
    .locale("en")
    .wrap(width)
    .exitProcess(false)
    .strictOptions()
    .parserConfiguration(PARSER_CONFIGURATION)
    .usage(
      `$0 [options] -- <command> [args...]\n\nRun <command> only while this process holds the lease. When leadership ends, the command's whole\nprocess group gets --kill-signal, then SIGKILL after --kill-grace, before the lease is released.`,
    )
    .options(options(flagsFor("run")))
    .example("$0 --no-wait -- ./backup.sh", "cron: skip this run if another copy on this host is running")
    .example("LEADER_RUN_LOCK='redis://:secret@redis:6379' $0 -- node worker.js", "one worker across hosts; the others stand by")
    .example("$0 --lock k8s: --name my-controller -- ./controller", "a Kubernetes Lease, client-go compatible")
    .example("$0 --lease-duration 30s --renew-deadline 20s --kill-grace 5s -- ./job", "slower timings, explicit grace")
    .example("$0 --restart on-failure --on-lost campaign -- ./daemon", "keep a single daemon alive across hosts")
    .epilogue(RUN_EPILOGUE)
    .command("status", "show who holds the lease, since when, and the term", (c) =>
      c
        .usage(`$0 status [options] [-- <command> [args...]]\n\nShow the lease of --name (or of the command after --, as the run command would name it).`)
        .options(options(flagsFor("status")))
        .example("$0 status --name node-cron-js", "who holds the lease of `leader-run -- node cron.js`")
        .example("$0 status -- node cron.js", "the same, deriving the name from the command")
        .example("$0 status --lock redis://redis:6379 --name nightly --output json", "machine-readable")
        .example("$0 status --name nightly --watch", "one line per change of holder, until Ctrl-C")
        .epilogue(STATUS_EPILOGUE),
    )
    .command("release", "give the lease up (only our --identity's, unless --force)", (c) =>
      c
        .usage(`$0 release [options] [-- <command> [args...]]\n\nRelease the lease of --name (or of the command after --) so a standby can take it at once.`)
        .options(options(flagsFor("release")))
        .example("$0 release --name node-cron-js --identity web-1_1a2b3c4d", "release it if that identity holds it")
        .example("$0 release --name node-cron-js --force", "clear the lease of a holder that is gone for good")
        .epilogue(RELEASE_EPILOGUE),
    )
    .command("step-down", "ask the live leader to hand over: it stops its command, releases, and a standby takes over", (c) =>
      c
        .usage(`$0 step-down [options] [-- <command> [args...]]\n\nAsk the holder of --name (or of the command after --) to hand over gracefully, wait, and report who leads next.`)
        .options(options(flagsFor("step-down")))
        .example("$0 step-down --name billing-worker", "move the worker to a standby, e.g. before maintenance")
        .epilogue(STEP_DOWN_EPILOGUE),
    )
    .command("completion [shell]", "print the completion script of bash, zsh or fish (default: $SHELL's)", (c) =>
      c
        .usage(`$0 completion [bash|zsh|fish]\n\nPrint a completion script for your shell.`)
        .positional("shell", { type: "string", choices: COMPLETION_SHELLS, describe: "bash, zsh or fish" })
        .example("$0 completion bash >> ~/.bashrc", "bash")
        .example("$0 completion zsh > \"${fpath[1]}/_leader-run\"", "zsh")
        .example("$0 completion fish > ~/.config/fish/completions/leader-run.fish", "fish"),
    )
    .command("help [command]", "show the help of leader-run or of one command")
    .help()
    .alias("help", "h");
  if (ctx.version !== undefined) y.version(ctx.version).alias("version", "V");
  else y.version(false);
  return y;
}

/** yargs' raw result. */
type RawArgv = Record<string, unknown> & { _: (string | number)[]; "--"?: (string | number)[] };

/**
 * Parses and validates a command line (without the node and script paths).
 * @throws UsageError (exit 64) with a one-line message; nothing has been started.
 */
export async function parseCommandLine(args: readonly string[], ctx: ParseContext = {}): Promise<ParsedCommandLine> {
  const parsed = await parseWith("auto", args, ctx);
  if (parsed === undefined) throw new Error("the parser gave no result"); // "auto" always has one
  return parsed;
}

/**
 * Which parser reads the command line: `auto` (the fast path, yargs when it declines), or one of them
 * alone, for the differential test (`fast` returns undefined where it would defer to yargs).
 */
export type ParseEngine = "auto" | "fast" | "yargs";

/** parseCommandLine with a chosen engine. */
export async function parseWith(engine: ParseEngine, args: readonly string[], ctx: ParseContext = {}): Promise<ParsedCommandLine | undefined> {
  if (args[0] === COMPLETE_COMMAND) {
    const words = args.slice(args[1] === "--" ? 2 : 1);
    const current = words.pop() ?? "";
    const found = completions(words, current);
    return { command: "output", text: found.length === 0 ? "" : `${found.join("\n")}\n` };
  }
  if (args[0] === "help") {
    // `leader-run help status` is `leader-run status --help` (yargs alone would not print anything).
    const topic = args[1];
    if (args.length > 2 || (topic !== undefined && !(HELP_TOPICS as readonly string[]).includes(topic))) {
      throw new UsageError(`no help for "${args.slice(1).join(" ")}"; use one of: ${HELP_TOPICS.join(", ")}`);
    }
    return parseWith(engine, topic === undefined || topic === "run" ? ["--help"] : [topic, "--help"], ctx);
  }
  const fast = engine === "yargs" ? undefined : fastParse(args, fastParseSpec(ctx));
  if (fast && "yargsMessage" in fast) throw yargsError(new Error(fast.yargsMessage));
  if (fast) return fromArgv(fast.argv, ctx);
  if (engine === "fast") return undefined;
  const parser = await buildParser(ctx);
  let failure: Error | undefined;
  let output = "";
  const argv = (await parser.parseAsync([...args], {}, (err, _argv, out) => {
    if (err && !failure) failure = err;
    if (out) output += output === "" ? out : `\n${out}`;
  })) as unknown as RawArgv;
  if (failure) throw yargsError(failure);
  if (argv.help === true || argv.version === true) {
    return { command: "output", text: output.endsWith("\n") ? output : `${output}\n` };
  }
  return fromArgv(argv, ctx);
}

/** After parsing (by either engine): the command and its validated options. */
function fromArgv(argv: RawArgv, ctx: ParseContext): ParsedCommandLine {
  // yargs lets `--_ x` replace the positionals with a value.
  if (!Array.isArray(argv._)) throw new UsageError(`unknown option --_ (see ${BIN} --help; the command goes after --)`);
  const positionals = argv._.map(String);
  const first = positionals[0];
  const env = ctx.env ?? process.env;
  const cwd = ctx.cwd ?? process.cwd();
  const afterDash = (argv["--"] ?? []).map(String);
  if (first === "completion") {
    if (positionals.length > 1) throw new UsageError(`completion takes one shell name (got "${positionals.slice(1).join(" ")}")`);
    const shell = typeof argv.shell === "string" ? argv.shell : shellFromEnv(env);
    return { command: "output", text: completionScript(shell) };
  }
  if (first === "run") {
    // `leader-run run -- cmd` is what people type after reading "the run command".
    if (positionals.length > 1) {
      throw new UsageError(`unexpected "${positionals[1]}" before --: ${BIN} run [options] -- ${[...positionals.slice(1), ...afterDash].join(" ")}`);
    }
    positionals.shift();
  }
  return commandFromPositionals(positionals, argv, afterDash, env, cwd);
}

const HELP_TOPICS = ["run", "status", "release", "step-down", "completion"] as const;

function commandFromPositionals(positionals: string[], argv: RawArgv, afterDash: string[], env: NodeJS.ProcessEnv, cwd: string): ParsedCommandLine {
  const first = positionals[0];
  if (first === "status" || first === "release" || first === "step-down") {
    if (positionals.length > 1) {
      throw new UsageError(`${first} takes no arguments (got "${positionals[1]}"); to name the lease by its command, put the command after --`);
    }
    const values = new Values(argv, env);
    const target = resolveTarget(values, first, afterDash, cwd);
    const output = oneOf(values, "output", OUTPUT_FORMATS, "text");
    if (first === "status") return { command: "status", options: { ...target, output, watch: values.boolean("watch")?.value ?? false } };
    if (first === "step-down") return { command: "step-down", options: { ...target, output } };
    return { command: "release", options: { ...target, output, force: values.boolean("force")?.value ?? false } };
  }
  if (first !== undefined) {
    throw new UsageError(
      `unknown command "${first}"; to run a command, put it after --: ${BIN} [options] -- ${[...positionals, ...afterDash].join(" ")}`,
    );
  }
  if (afterDash.length === 0 || afterDash.every((w) => w === "")) {
    throw new UsageError(`missing command: ${BIN} [options] -- <command> [args...] (see ${BIN} --help)`);
  }
  return { command: "run", options: resolveRun(new Values(argv, env), afterDash, cwd) };
}

function yargsError(err: Error): UsageError {
  const m = /^Unknown arguments?: (.*)$/.exec(err.message);
  if (m?.[1]) {
    const names = m[1]
      .split(", ")
      .filter((n, _i, all) => !/[A-Z]/.test(n) || !all.includes(n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)))
      .map((n) => (n.length === 1 ? `-${n}` : `--${n}`));
    const plural = names.length > 1 ? "s" : "";
    return new UsageError(`unknown option${plural} ${names.join(", ")} (see ${BIN} --help; the command goes after --)`);
  }
  const missing = /^Not enough arguments following: (.*)$/.exec(err.message);
  if (missing?.[1]) return new UsageError(`--${missing[1]} needs a value`);
  return new UsageError(err.message.split("\n")[0] ?? err.message);
}

interface Found<T> {
  value: T;
  /** `--flag` or `LEADER_RUN_FLAG`, for messages. */
  from: string;
  level: "flag" | "env";
}

/** Flag, else environment twin. */
class Values {
  private readonly insideChild: boolean;
  constructor(
    private readonly argv: RawArgv,
    readonly env: NodeJS.ProcessEnv,
  ) {
    this.insideChild = (env[CHILD_MARKER] ?? "") !== "";
  }

  private fromEnv(flag: string): Found<string> | undefined {
    if (this.insideChild && INHERITED_FROM_PARENT.has(flag)) return undefined;
    const name = envName(flag);
    const v = this.env[name];
    return v === undefined || v === "" ? undefined : { value: v, from: name, level: "env" };
  }

  string(flag: string): Found<string> | undefined {
    const v = this.argv[flag];
    if (typeof v === "string") return { value: v, from: `--${flag}`, level: "flag" };
    if (v !== undefined && v !== null) return { value: String(v), from: `--${flag}`, level: "flag" };
    return this.fromEnv(flag);
  }

  boolean(flag: string): Found<boolean> | undefined {
    const v = this.argv[flag];
    if (typeof v === "boolean") return { value: v, from: `--${flag}`, level: "flag" };
    const e = this.fromEnv(flag);
    if (!e) return undefined;
    const t = e.value.trim().toLowerCase();
    if (["1", "true", "yes", "on"].includes(t)) return { ...e, value: true };
    if (["0", "false", "no", "off"].includes(t)) return { ...e, value: false };
    throw new UsageError(`${e.from}=${JSON.stringify(e.value)}: use true or false`);
  }
}

function nonEmpty(found: Found<string>): string {
  if (found.value === "") throw new UsageError(`${found.from} needs a value`);
  return found.value;
}

function oneOf<T extends string>(values: Values, flag: string, allowed: readonly T[], fallback: T): T {
  const found = values.string(flag);
  if (!found) return fallback;
  const v = nonEmpty(found);
  if (!(allowed as readonly string[]).includes(v)) {
    throw new UsageError(`${found.from} ${JSON.stringify(v)}: use one of ${allowed.join(", ")}`);
  }
  return v as T;
}

function duration(values: Values, flag: string, fallbackMs: number): { ms: number; given: boolean } {
  const found = values.string(flag);
  if (!found) return { ms: fallbackMs, given: false };
  let ms: number;
  try {
    ms = parseDuration(found.value, found.from);
  } catch (e) {
    if (e instanceof DurationSyntaxError) throw new UsageError(e.message);
    throw e;
  }
  if (ms > MAX_TIMER_MS) {
    throw new UsageError(`${found.from}: ${JSON.stringify(found.value)} is too long; the longest is ${formatDuration(MAX_TIMER_MS)} (Node.js timers)`);
  }
  return { ms, given: true };
}

function resolveTarget(values: Values, command: CommandName, words: readonly string[], cwd: string): LeaseTarget {
  const warnings: string[] = [];
  const lockFound = values.string("lock");
  const lockUrl = lockFound ? nonEmpty(lockFound) : DEFAULT_LOCK_URL;
  const lock = parseLockUrl(lockUrl, { cwd, flag: lockFound?.from ?? "--lock" });
  if (lockFound?.level === "flag" && lock.redacted !== lock.url) {
    warnings.push(
      `the --lock URL holds a password, which other users can read in the process list; pass it as ${envName("lock")} instead`,
    );
  }

  const nameFound = values.string("name");
  let name: string;
  let nameDerived = false;
  if (nameFound) {
    name = nonEmpty(nameFound);
    const problem = leaseNameProblem(name);
    if (problem) {
      const suggestion = readableSlug(name);
      throw new UsageError(`${nameFound.from} ${JSON.stringify(name)} ${problem}${suggestion ? `; for example ${JSON.stringify(suggestion)}` : ""}`);
    }
  } else if (words.length > 0) {
    name = commandSlug(words);
    nameDerived = true;
  } else {
    throw new UsageError(
      `${command} needs the lease: --name <lease>, or the command after -- to derive the name as the run command does`,
    );
  }

  const idFound = values.string("identity");
  let identity: string;
  if (idFound) {
    identity = nonEmpty(idFound);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(identity) || identity.length > 253) {
      throw new UsageError(`${idFound.from}: use at most 253 printable characters (no control characters)`);
    }
  } else {
    identity = defaultIdentity(values.env);
  }

  const target: LeaseTarget = {
    lock,
    name,
    nameDerived,
    identity,
    identityDerived: idFound === undefined,
    logFormat: "text",
    logLevel: "info",
    quiet: false,
    warnings,
  };
  for (const flag of ["namespace", "kubeconfig"] as const) {
    const found = values.string(flag);
    if (!found) continue;
    const v = nonEmpty(found);
    if (lock.kind !== "kubernetes") {
      throw new UsageError(`${found.from} is only for --lock kubernetes: (the lock is ${lock.kind})`);
    }
    if (flag === "namespace" && !/^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/.test(v)) {
      throw new UsageError(`${found.from} ${JSON.stringify(v)}: a namespace is a DNS label (lowercase letters, digits and '-', at most 63)`);
    }
    target[flag] = v;
  }
  const lockFiles = [
    ["tls-ca", "tlsCaFile", true],
    ["tls-cert", "tlsCertFile", true],
    ["tls-key", "tlsKeyFile", true],
    ["etcd-password-file", "etcdPasswordFile", false],
  ] as const;
  for (const [flag, field, tlsOnly] of lockFiles) {
    const found = values.string(flag);
    if (!found) continue;
    const v = nonEmpty(found);
    if (lock.kind !== "etcd" || (tlsOnly && !lock.tls)) {
      throw new UsageError(`${found.from} is only for --lock ${tlsOnly ? "etcds://" : "etcd:// or etcds://"} (the lock is ${lock.redacted})`);
    }
    target[field] = resolvePath(cwd, v);
  }
  const pgTable = values.string("pg-table");
  if (pgTable) {
    const v = nonEmpty(pgTable);
    if (lock.kind !== "postgres") throw new UsageError(`${pgTable.from} is only for --lock postgres:// (the lock is ${lock.kind})`);
    if (!/^(?:[a-z_][a-z0-9_$]{0,62}\.)?[a-z_][a-z0-9_$]{0,56}$/.test(v)) {
      throw new UsageError(`${pgTable.from} ${JSON.stringify(v)}: write [schema.]table in lower-case letters, digits and _ (table at most 57)`);
    }
    target.pgTable = v;
  }
  target.logFormat = oneOf(values, "log-format", LOG_FORMATS, DEFAULTS.logFormat);
  const levelFound = values.string("log-level");
  let level = oneOf(values, "log-level", LOG_LEVELS, DEFAULTS.logLevel);
  const verbose = values.boolean("verbose")?.value === true ? values.boolean("verbose") : undefined;
  const quiet = values.boolean("quiet")?.value === true ? values.boolean("quiet") : undefined;
  if (verbose && quiet && verbose.level === quiet.level) {
    throw new UsageError(`${verbose.from} and ${quiet.from} contradict each other; use one of them`);
  }
  // Between a flag and the other option's environment twin, the flag wins.
  const verboseWins = verbose !== undefined && (quiet === undefined || verbose.level === "flag");
  target.quiet = quiet !== undefined && !verboseWins;
  // -v means debug, unless --log-level was given as a flag and -v only comes from the environment.
  if (verboseWins && !(levelFound?.level === "flag" && verbose?.level === "env")) level = "debug";
  target.logLevel = effectiveLevel(level, target.quiet);
  return target;
}

function resolveRun(values: Values, command: string[], cwd: string): RunOptions {
  const target = resolveTarget(values, "run", command, cwd);

  const ld = duration(values, "lease-duration", DEFAULTS.leaseDurationMs).ms;
  const rd = duration(values, "renew-deadline", DEFAULTS.renewDeadlineMs).ms;
  const rp = duration(values, "retry-period", DEFAULTS.retryPeriodMs).ms;
  const kg = duration(values, "kill-grace", Number.NaN);
  const killGraceMs = validateTimings({
    leaseDurationMs: ld,
    renewDeadlineMs: rd,
    retryPeriodMs: rp,
    killGraceMs: kg.given ? kg.ms : undefined,
  });

  const killSignal = parseKillSignal(values.string("kill-signal"));
  const restart = oneOf(values, "restart", RESTART_POLICIES, DEFAULTS.restart);
  const restartDelay = duration(values, "restart-delay", DEFAULTS.restartDelayMs);
  const onLost = oneOf(values, "on-lost", ON_LOST_POLICIES, DEFAULTS.onLost);
  const release = pairedBoolean(values, "release", "no-release", true);

  const wait = duration(values, "wait", 0);
  const noWaitFound = values.boolean("no-wait");
  let noWait = noWaitFound?.value ?? false;
  let waitMs: number | undefined;
  if (wait.given) {
    const waitFrom = values.string("wait")?.from ?? "--wait";
    if (noWait && noWaitFound) {
      const waitLevel = values.string("wait")?.level;
      if (waitLevel === noWaitFound.level) {
        throw new UsageError(`${waitFrom} and ${noWaitFound.from} contradict each other; use one of them`);
      }
      // A flag beats the other option's environment twin.
      if (waitLevel === "flag") noWait = false;
    }
    if (!noWait) {
      if (wait.ms === 0) noWait = true;
      else waitMs = wait.ms;
    }
  }

  const codeFound = values.string("conflict-exit-code");
  let conflictExitCode: number = DEFAULTS.conflictExitCode;
  if (codeFound) {
    const t = codeFound.value.trim();
    if (!/^\d{1,3}$/.test(t) || Number(t) > 255) {
      throw new UsageError(`${codeFound.from} ${JSON.stringify(codeFound.value)}: use a whole number from 0 to 255`);
    }
    conflictExitCode = Number(t);
  }

  const minHold = duration(values, "min-hold", 0);
  if (minHold.given && !release) {
    throw new UsageError(`${values.string("min-hold")?.from ?? "--min-hold"} and --no-release contradict each other: without release the lease is held until it expires anyway; drop one of them`);
  }
  const hooks: Partial<Record<HookName, string>> = {};
  for (const hook of HOOK_NAMES) {
    const found = values.string(hook);
    if (found) hooks[hook] = nonEmpty(found);
  }
  const hookTimeout = duration(values, "hook-timeout", DEFAULTS.hookTimeoutMs);
  if (hookTimeout.given && hookTimeout.ms <= 0) throw new UsageError(`${values.string("hook-timeout")?.from ?? "--hook-timeout"} must be greater than zero`);
  const shell = values.boolean("shell")?.value ?? false;
  const healthzTimeout = duration(values, "healthz-timeout", DEFAULTS.healthzTimeoutMs);
  const httpFound = values.string("http");
  let http: HttpAddress | undefined;
  if (httpFound) {
    try {
      http = parseHttpAddress(nonEmpty(httpFound));
    } catch (e) {
      if (e instanceof Error && e.name === "HttpAddressError") {
        throw new UsageError(e.message.replace(/^--http/, httpFound.from));
      }
      throw e;
    }
  }

  return {
    ...target,
    command,
    shell,
    leaseDurationMs: ld,
    renewDeadlineMs: rd,
    retryPeriodMs: rp,
    waitMs,
    noWait,
    minHoldMs: minHold.ms,
    hooks,
    hookTimeoutMs: hookTimeout.ms,
    conflictExitCode,
    killSignal,
    killGraceMs,
    killGraceDerived: !kg.given,
    restart,
    restartDelayMs: restartDelay.ms,
    onLost,
    release,
    http,
    healthzTimeoutMs: healthzTimeout.ms,
  };
}

function pairedBoolean(values: Values, on: string, off: string, fallback: boolean): boolean {
  const a = values.boolean(on);
  const b = values.boolean(off);
  const aSet = a?.value === true ? a : undefined;
  const bSet = b?.value === true ? b : undefined;
  if (aSet && bSet) {
    if (aSet.level === bSet.level) throw new UsageError(`${aSet.from} and ${bSet.from} contradict each other; use one of them`);
    return aSet.level === "flag";
  }
  if (aSet) return true;
  if (bSet) return false;
  if (a) return a.value; // --release=false
  if (b) return !b.value;
  return fallback;
}

export interface Timings {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  /** undefined = derive it. */
  killGraceMs?: number | undefined;
}

/**
 * The timing rules, in client-go's order and with its wording first (as `validateElectionConfig`),
 * followed by how to fix it in flag terms; then leader-run's own: leaseDuration >= 1s and
 * renewDeadline + killGrace < leaseDuration. Returns the kill grace to use.
 * @throws UsageError
 */
export function validateTimings(t: Timings): number {
  const ld = t.leaseDurationMs;
  const rd = t.renewDeadlineMs;
  const rp = t.retryPeriodMs;
  const f = formatDuration;
  if (ld <= rd) {
    throw new UsageError(
      `leaseDuration must be greater than renewDeadline: --lease-duration is ${f(ld)}, --renew-deadline is ${f(rd)}; raise --lease-duration above ${f(rd)} or lower --renew-deadline below ${f(ld)}`,
    );
  }
  const jittered = Math.trunc(JITTER_FACTOR * rp * 1e6) / 1e6;
  if (rd <= jittered) {
    throw new UsageError(
      `renewDeadline must be greater than retryPeriod*JitterFactor: --renew-deadline is ${f(rd)}, --retry-period is ${f(rp)} (x${JITTER_FACTOR} = ${f(jittered)}); raise --renew-deadline above ${f(jittered)} or lower --retry-period below ${f(Math.floor((rd / JITTER_FACTOR) * 1000) / 1000)}`,
    );
  }
  if (ld <= 0) throw new UsageError("leaseDuration must be greater than zero: set --lease-duration, e.g. 15s");
  if (rd <= 0) throw new UsageError("renewDeadline must be greater than zero: set --renew-deadline, e.g. 10s");
  if (rp <= 0) throw new UsageError("retryPeriod must be greater than zero: set --retry-period, e.g. 2s");
  if (ld < 1000) {
    throw new UsageError(
      `leaseDuration must be at least 1s (got ${f(ld)}): lease records store whole seconds, so raise --lease-duration to 1s or more`,
    );
  }
  // Other processes wait the record's whole seconds (5.9s is 5s to them): every check below uses that.
  const eld = effectiveLeaseDurationMs(ld);
  const wholeSeconds = (ms: number): number => Math.ceil(ms / 1000) * 1000;
  if (eld <= rd) {
    throw new UsageError(
      `--lease-duration ${f(ld)} is stored as ${f(eld)} (lease records store whole seconds), which must be greater than --renew-deadline ${f(rd)}; raise --lease-duration to ${f(Math.floor(rd / 1000) * 1000 + 1000)} or lower --renew-deadline below ${f(eld)}`,
    );
  }
  if (t.killGraceMs === undefined) return deriveKillGraceMs(eld, rd);
  const g = t.killGraceMs;
  if (rd + g >= eld) {
    const stored = eld === ld ? "" : ` (lease records store whole seconds, so --lease-duration ${f(ld)} counts as ${f(eld)})`;
    throw new UsageError(
      `--kill-grace ${f(g)} is too long: renew-deadline ${f(rd)} + kill-grace ${f(g)} must stay below lease-duration ${f(eld)}${stored} so the command is dead before another process can take over; lower --kill-grace to ${f(deriveKillGraceMs(eld, rd))} or raise --lease-duration to ${f(wholeSeconds(rd + 2 * g))}`,
    );
  }
  return g;
}

/** Signals that cannot stop a process: as a kill signal they would only waste the grace period. */
const NOT_STOPPING = new Set(["SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGCONT", "SIGCHLD", "SIGCLD", "SIGWINCH", "SIGURG"]);

/** `TERM`, `SIGTERM`, `sigterm` or `15` → `"SIGTERM"`. */
function parseKillSignal(found: Found<string> | undefined): NodeJS.Signals {
  if (!found) return DEFAULTS.killSignal;
  const name = parseSignalName(found.value);
  if (!name) {
    throw new UsageError(`${found.from} ${JSON.stringify(found.value)} is not a signal; use a name like SIGTERM, SIGINT, SIGQUIT or SIGHUP`);
  }
  if (NOT_STOPPING.has(name)) {
    throw new UsageError(`${found.from} ${name} does not stop a process; use SIGTERM, SIGINT, SIGQUIT, SIGHUP or SIGKILL`);
  }
  return name;
}
