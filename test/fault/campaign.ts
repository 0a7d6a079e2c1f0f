/**
 * The fault-campaign driver: N real `bin/leader-run.js` candidates on one lease, restarted whenever
 * they exit (like systemd's Restart=always), each running the witness command `sleep <marker>`; an
 * independent sampler process (sampler.ts) watching /proc; and a seeded sequence of faults from the
 * fault table, each followed by a wait for a leader again and a random settle time.
 *
 * Used by the short CI campaign (campaign.test.ts) and the long one (bench/fault-campaign.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { BackendAdapter, BackendServer } from "./backends.js";
import { PROCESS_FAULTS, Rng, guardsOf, type FaultContext, type FaultSpec, type Leader, type Timing } from "./faults.js";
import { isLiveState, listPids, monoMs, readCmdline, readEnviron, readStat } from "./procfs.js";
import { CAMPAIGN_ENV, type Overlap, type SamplerResult, type TokenRegression } from "./sampler.js";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));
/** The leader-run under test: this checkout's build, or FAULT_LEADER_RUN_BIN (another branch's build, before merging it). */
export const BIN = process.env.FAULT_LEADER_RUN_BIN ?? join(ROOT, "bin", "leader-run.js");
const SAMPLER = fileURLToPath(new URL("./sampler.ts", import.meta.url));

export const DEFAULT_TIMING: Timing = { leaseDurationMs: 3000, renewDeadlineMs: 2000, retryPeriodMs: 500 };

export interface CampaignOptions {
  backend: BackendAdapter;
  faults: number;
  seed: number;
  candidates?: number;
  timing?: Timing;
  sampleEveryMs?: number;
  /** Only these kinds (default: every guardable kind of the backend). */
  kinds?: readonly string[];
  /** Also run the faults no process-level guard can survive (freeze-all). */
  includeUnguardable?: boolean;
  /** Bound on "a leader runs the command again" after each fault. */
  recoverTimeoutMs?: number;
  /** A leader counts as back after a fault once it has run this long unchanged (default RD + grace). */
  stableMs?: number;
  /** How long, after everything was stopped, processes may take to vanish before they count as left behind. */
  settleMs?: number;
  log?: (line: string) => void;
}

export interface FaultRecord {
  index: number;
  kind: string;
  target: string;
  /** The leader-run the fault was aimed at (leader faults only). */
  leaderRun?: number;
  /** The process group of that leader's command. */
  witnessPgid?: number;
  /** Monotonic ms relative to the campaign start. */
  startMs: number;
  appliedMs: number;
  /** When a leader ran the command again; null if none did within recoverTimeoutMs (a stall). */
  recoveredMs: number | null;
  error?: string;
}

export interface AttributedOverlap extends Overlap {
  fault: FaultRecord | undefined;
}

export interface CandidateExit {
  slot: number;
  identity: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  atMs: number;
  stderrTail: string;
}

export interface KindSummary {
  kind: string;
  faults: number;
  overlaps: number;
  maxOverlapMs: number;
  tokenRegressions: number;
  stalls: number;
  errors: number;
}

export interface CampaignResult {
  backend: string;
  seed: number;
  /** The fault kinds drawn from, in table order (the seed reproduces a run only with the same kinds). */
  kinds: string[];
  /** Kinds no process-level guard can survive: their overlaps are expected and do not fail a campaign. */
  unguardable: string[];
  /** The argument list of `npm run fault` that replays this campaign. */
  replay: string;
  campaign: string;
  timing: Timing;
  candidates: number;
  durationMs: number;
  faults: FaultRecord[];
  overlaps: AttributedOverlap[];
  tokenRegressions: Array<TokenRegression & { fault: FaultRecord | undefined }>;
  leftovers: SamplerResult["leftovers"];
  sampler: Pick<SamplerResult, "samples" | "everyMs" | "maxGapMs"> & { groups: number };
  exits: CandidateExit[];
  summary: KindSummary[];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // already gone
  }
}

/** The campaign was asked for something that does not exist (an unknown fault kind): fix the arguments. */
export class CampaignUsageError extends Error {
  override name = "CampaignUsageError";
}

/** The fault kinds a campaign draws from. */
export function faultTable(server: Pick<BackendServer, "faults">, options: Pick<CampaignOptions, "kinds" | "includeUnguardable">): FaultSpec[] {
  const all = [...PROCESS_FAULTS, ...server.faults];
  if (options.kinds !== undefined) {
    const unknown = options.kinds.filter((k) => !all.some((f) => f.kind === k));
    if (unknown.length > 0) throw new CampaignUsageError(`unknown fault kind(s) ${unknown.join(", ")}; known: ${all.map((f) => f.kind).join(", ")}`);
    return all.filter((f) => options.kinds?.includes(f.kind));
  }
  return all.filter((f) => options.includeUnguardable === true || f.unguardable !== true);
}

/** Balanced and reproducible: shuffled rounds of every kind, so even a short campaign covers all kinds. */
export function faultSequence(rng: Rng, kinds: readonly FaultSpec[], count: number): FaultSpec[] {
  const out: FaultSpec[] = [];
  while (out.length < count) out.push(...rng.shuffle(kinds));
  return out.slice(0, count);
}

class Candidate {
  proc: ChildProcess | undefined;
  generation = 0;
  private stderr = "";
  constructor(
    readonly slot: number,
    private readonly args: (identity: string) => string[],
    private readonly env: NodeJS.ProcessEnv,
    private readonly cwd: string,
    private readonly onExit: (exit: CandidateExit) => void,
    private readonly restart: () => boolean,
    private readonly campaignStart: number,
  ) {}

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  start(): void {
    this.generation += 1;
    const identity = `c${this.slot}g${this.generation}`;
    this.stderr = "";
    // Its own process group, like a service: a signal meant for the driver's group never reaches it.
    const proc = spawn(process.execPath, [BIN, ...this.args(identity)], { detached: true, stdio: ["ignore", "ignore", "pipe"], env: this.env, cwd: this.cwd });
    this.proc = proc;
    proc.stderr?.setEncoding("utf8").on("data", (s: string) => {
      this.stderr = (this.stderr + s).slice(-8000);
    });
    // 'exit', not 'close': an orphaned command inherits leader-run's stderr and would hold 'close' back forever.
    proc.once("exit", (code, sig) => {
      if (this.proc === proc) this.proc = undefined;
      this.onExit({ slot: this.slot, identity, code, signal: sig, atMs: monoMs() - this.campaignStart, stderrTail: this.stderr.slice(-2000) });
      // Restart=always with systemd's default RestartSec (100 ms).
      if (this.restart()) setTimeout(() => this.restart() && this.proc === undefined && this.start(), 100);
    });
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined || proc.pid === undefined) return;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const closed = new Promise<void>((r) => proc.once("exit", () => r()));
    signal(proc.pid, "SIGCONT");
    signal(proc.pid, "SIGTERM");
    const timer = setTimeout(() => proc.pid !== undefined && signal(proc.pid, "SIGKILL"), 15_000);
    await closed;
    clearTimeout(timer);
  }
}

/** Every live process of this campaign (by the environment marker every candidate's descendant inherits). */
export function campaignPids(campaign: string): number[] {
  return listPids().filter((pid) => pid !== process.pid && readEnviron(pid)?.get(CAMPAIGN_ENV) === campaign && isLiveState(readStat(pid)?.state ?? "X"));
}

let campaignCount = 0;

export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const timing = options.timing ?? DEFAULT_TIMING;
  const n = options.candidates ?? 3;
  const everyMs = options.sampleEveryMs ?? 5;
  const log = options.log ?? (() => undefined);
  if (process.env.FAULT_LEADER_RUN_BIN === undefined && !existsSync(join(ROOT, "dist", "bin", "main.js"))) {
    throw new Error("dist/bin/main.js is missing: run `npm run build` first");
  }
  const why = options.backend.unavailable();
  if (why !== undefined) throw new Error(why);

  const rng = new Rng(options.seed);
  // Unique per host and run: two campaigns of one process (CI runs file and Redis at once) must never
  // share a marker, or each sampler would count the other's witnesses.
  campaignCount += 1;
  const campaign = `${process.pid}${String(Date.now() % 1e6).padStart(6, "0")}${campaignCount}`;
  // `sleep 900000.<campaign>`: a valid duration and a cmdline unique to this campaign.
  const marker = `900000.${campaign}`;
  const lease = `fault-${campaign}`;
  const work = mkdtempSync(join(tmpdir(), "leader-run-fault-"));
  mkdirSync(join(work, "lock"), { mode: 0o700 });
  const t0 = monoMs();
  const rel = (ms: number): number => Math.round(ms - t0);
  const exits: CandidateExit[] = [];
  const candidates: Candidate[] = [];
  let stopping = false;
  let server: BackendServer | undefined;
  let sampler: ChildProcess | undefined;
  let samplerDone: Promise<void> | undefined;
  const resultFile = join(work, "sampler.json");
  const records: FaultRecord[] = [];
  let kindsDrawn: string[] = [];
  let unguardable: string[] = [];
  let failure: unknown;

  try {
    server = await options.backend.start(work);
    const table = faultTable(server, options);
    kindsDrawn = table.map((f) => f.kind);
    unguardable = table.filter((f) => f.unguardable === true).map((f) => f.kind);
    const sequence = faultSequence(rng, table, options.faults);

    sampler = spawn(process.execPath, ["--import", "tsx", SAMPLER, campaign, marker, String(everyMs), resultFile], {
      stdio: ["pipe", "pipe", "inherit"],
      cwd: ROOT,
    });
    const samplerProc = sampler;
    samplerDone = new Promise((r) => samplerProc.once("close", () => r()));
    await new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: samplerProc.stdout as NodeJS.ReadableStream });
      rl.once("line", () => resolve());
      samplerProc.once("close", (code) => reject(new Error(`the sampler exited (${code}) before it was ready`)));
    });

    const env: NodeJS.ProcessEnv = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("LEADER_RUN_") && k !== CAMPAIGN_ENV) env[k] = v;
    env[CAMPAIGN_ENV] = campaign;
    const seconds = (ms: number): string => `${ms}ms`;
    for (let slot = 0; slot < n; slot++) {
      // Both on-lost policies: exit (the service manager restarts it) and campaign (it stays and tries again).
      const onLost = slot % 2 === 0 ? "exit" : "campaign";
      const args = (identity: string): string[] => [
        "--lock", server?.lockUrl ?? "", "--name", lease, "--identity", identity, "--log-format", "json",
        "--lease-duration", seconds(timing.leaseDurationMs), "--renew-deadline", seconds(timing.renewDeadlineMs),
        "--retry-period", seconds(timing.retryPeriodMs), "--on-lost", onLost, "--", "sleep", marker,
      ];
      const c = new Candidate(slot, args, env, work, (e) => exits.push(e), () => !stopping, t0);
      candidates.push(c);
      c.start();
    }

    const findLeader = (): Leader | undefined => {
      const ours = new Set(candidates.map((c) => c.pid).filter((p): p is number => p !== undefined));
      for (const pid of listPids()) {
        const cmd = readCmdline(pid);
        if (cmd?.length !== 2 || cmd[1] !== marker) continue;
        const st = readStat(pid);
        if (st === undefined || !isLiveState(st.state) || st.state === "T") continue;
        // The command is leader-run's child today; a guard may come to sit in between (leader-run → guard
        // → command), so walk up to the candidate rather than assume the parent is it.
        const between: number[] = [];
        let up = st.ppid;
        while (!ours.has(up) && up > 1 && between.length < 4) {
          between.push(up);
          up = readStat(up)?.ppid ?? 0;
        }
        if (!ours.has(up)) continue;
        const lr = readStat(up);
        if (lr === undefined || lr.state === "T") continue;
        const raw = readEnviron(pid)?.get("LEADER_RUN_FENCING_TOKEN");
        const guards = [...new Set([...between, ...guardsOf(up, between[between.length - 1] ?? pid)])];
        return { leaderRun: up, witness: pid, pgid: st.pgrp, guards, token: raw === undefined ? null : Number(raw) };
      }
      return undefined;
    };
    const recoverTimeoutMs = options.recoverTimeoutMs ?? 30_000;
    // A fault's consequences show within RD + grace after it ended (a leader that missed its renewals
    // stops its command by then): a leader counts as back once the same witness has run, guarded, that long.
    const stableMs = options.stableMs ?? timing.renewDeadlineMs + (timing.leaseDurationMs - timing.renewDeadlineMs) / 2;
    const waitForLeader = async (stable: number): Promise<Leader | undefined> => {
      const deadline = monoMs() + recoverTimeoutMs;
      let current: Leader | undefined;
      let since = 0;
      for (;;) {
        const l = findLeader();
        if (l === undefined || l.guards.length === 0) current = undefined;
        else if (current?.witness !== l.witness) {
          current = l;
          since = monoMs();
        } else current = l;
        if (current !== undefined && monoMs() - since >= stable) return current;
        if (monoMs() > deadline) return undefined;
        await sleep(50);
      }
    };
    const ctx: FaultContext = { rng, timing, sleep, signal };

    log(`campaign ${campaign}: backend ${options.backend.name}, seed ${options.seed}, ${options.faults} faults, ${n} candidates, lock ${server.lockUrl}`);
    if ((await waitForLeader(stableMs)) === undefined) throw new Error(`no candidate became leader within ${recoverTimeoutMs} ms`);
    for (const [index, spec] of sequence.entries()) {
      // The settle time is drawn first so the sequence of delays does not depend on which faults needed a target.
      const settle = rng.int(300, 1500);
      const leader = spec.needsLeader ? await waitForLeader(0) : undefined;
      const record: FaultRecord = { index, kind: spec.kind, target: "", startMs: rel(monoMs()), appliedMs: 0, recoveredMs: null };
      records.push(record);
      if (leader !== undefined) {
        record.leaderRun = leader.leaderRun;
        record.witnessPgid = leader.pgid;
      }
      try {
        if (spec.needsLeader && leader === undefined) throw new Error("no leader to aim at");
        record.target = await spec.apply(ctx, leader);
      } catch (error) {
        record.error = (error as Error).message;
      }
      record.appliedMs = rel(monoMs());
      const back = await waitForLeader(stableMs);
      record.recoveredMs = back === undefined ? null : rel(monoMs());
      log(`#${index} ${spec.kind} ${record.target}${record.error ? ` ERROR ${record.error}` : ""} → ${back === undefined ? "NO LEADER" : `leader ${back.leaderRun} token ${back.token} ${Math.round((record.recoveredMs ?? 0) - record.appliedMs)} ms after the fault`}`);
      await sleep(settle);
    }
  } catch (error) {
    failure = error;
  } finally {
    stopping = true;
    await Promise.all(candidates.map((c) => c.stop()));
    if (sampler !== undefined && sampler.exitCode === null) {
      sampler.stdin?.end(`finish ${options.settleMs ?? 10_000}\n`);
      await samplerDone;
    }
    // Whatever is still there now was reported as a leftover (or the run failed): kill it, resumed first.
    for (const pid of campaignPids(campaign)) {
      signal(pid, "SIGCONT");
      signal(pid, "SIGKILL");
    }
    await server?.stop().catch(() => undefined);
  }

  if (failure !== undefined) {
    rmSync(work, { recursive: true, force: true });
    throw failure;
  }
  let sampled: SamplerResult;
  try {
    sampled = JSON.parse(readFileSync(resultFile, "utf8")) as SamplerResult;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const attribute = (atMs: number): FaultRecord | undefined => {
    let found: FaultRecord | undefined;
    for (const r of records) if (r.startMs <= rel(atMs)) found = r;
    return found;
  };
  // An overlap (a stale copy) is blamed on the last fault aimed at its leader before it began (a
  // copy orphaned by one fault overlaps later leaders, long after the faults that follow); else on the
  // fault during which it began (server faults).
  const blame = (o: Overlap): FaultRecord | undefined => {
    const stale = o.groups[0];
    const aimed = records.filter((r) => r.startMs <= rel(o.startMs) && r.witnessPgid !== undefined && r.witnessPgid === stale?.pgid);
    return aimed.at(-1) ?? attribute(o.startMs);
  };
  const overlaps = sampled.overlaps.map((o) => ({ ...o, startMs: rel(o.startMs), endMs: rel(o.endMs), fault: blame(o) }));
  const tokenRegressions = sampled.tokenRegressions.map((t) => ({ ...t, atMs: rel(t.atMs), fault: attribute(t.atMs) }));
  const kinds = [...new Set(records.map((r) => r.kind))];
  const summary: KindSummary[] = kinds.map((kind) => {
    const of = overlaps.filter((o) => o.fault?.kind === kind);
    return {
      kind,
      faults: records.filter((r) => r.kind === kind).length,
      overlaps: of.length,
      maxOverlapMs: Math.round(Math.max(0, ...of.map((o) => o.durationMs))),
      tokenRegressions: tokenRegressions.filter((t) => t.fault?.kind === kind).length,
      stalls: records.filter((r) => r.kind === kind && r.recoveredMs === null).length,
      errors: records.filter((r) => r.kind === kind && r.error !== undefined).length,
    };
  });
  return {
    backend: options.backend.name,
    seed: options.seed,
    kinds: kindsDrawn,
    unguardable,
    replay: [
      `--backend ${options.backend.name} --faults ${options.faults} --seed ${options.seed}`,
      options.candidates === undefined ? "" : ` --candidates ${n}`,
      options.kinds === undefined ? "" : ` --kinds ${options.kinds.join(",")}`,
      options.includeUnguardable === true && options.kinds === undefined ? " --include-unguardable" : "",
    ].join(""),
    campaign,
    timing,
    candidates: n,
    durationMs: Math.round(monoMs() - t0),
    faults: records,
    overlaps,
    tokenRegressions,
    leftovers: sampled.leftovers,
    sampler: { samples: sampled.samples, everyMs: sampled.everyMs, maxGapMs: Math.round(sampled.maxGapMs), groups: sampled.groups.length },
    exits,
    summary,
  };
}
