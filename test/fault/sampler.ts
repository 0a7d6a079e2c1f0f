/**
 * The independent witness sampler of the fault campaigns: a process of its own (never the driver's
 * event loop, which is busy applying faults and may itself be slow) that scans /proc every few ms and
 * records what the campaign claims never happens:
 *
 * - an overlap: a sample in which two or more distinct process groups of the witness command are alive
 *   (stopped processes count — a SIGSTOPped copy is still a copy; zombies do not);
 * - a fencing-token regression: a newly seen witness group whose LEADER_RUN_FENCING_TOKEN is not
 *   greater than every token seen before it;
 * - leftovers: once the driver says everything was stopped, any process still carrying the campaign's
 *   environment marker (leader-run, its guard, the witness, anything they started) after a settle time.
 *
 * Usage (spawned by test/fault/campaign.ts):
 *   node --import tsx test/fault/sampler.ts <campaign-id> <witness-marker> <every-ms> <result.json>
 * It prints "ready" once the first scan is done, then "seen <pgid> <token>" for each new witness group. stdin: "finish <settle-ms>" ends the run: it keeps
 * sampling while it waits for the campaign's processes to vanish, writes the result and exits. End of
 * stdin (the driver died) finishes at once, so the sampler never outlives its driver.
 *
 * Cost: per tick one readdir of /proc plus reads for new pids only; known processes are re-read only
 * while they may still exec (young ones every tick, all of them every 200 ms), witnesses every tick.
 */
import { setPriority } from "node:os";
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";
import { isLiveState, listPids, monoMs, readCmdline, readEnviron, readStat } from "./procfs.js";

export const CAMPAIGN_ENV = "FAULT_CAMPAIGN";

export interface WitnessGroup {
  /** pgid/starttime of the group's first witness: unique even if the pgid number is reused. */
  key: string;
  pgid: number;
  pids: number[];
  /** leader-run that started it (the witness's parent when first seen). */
  parent: number;
  token: number | null;
  firstSeenMs: number;
  lastSeenMs: number;
}

/**
 * One stale copy: a witness group seen alive while a newer one (higher token, or seen later) was alive
 * too. `groups[0]` is the stale copy, the rest are the successors it ran next to.
 */
export interface Overlap {
  /** Monotonic ms (CLOCK_MONOTONIC, same clock as the driver's monoMs()) of the first overlapping sample. */
  startMs: number;
  /** The last overlapping sample. */
  endMs: number;
  /** Time between overlapping samples, summed (a lower bound; one sample alone counts 0). */
  durationMs: number;
  samples: number;
  groups: Array<Pick<WitnessGroup, "pgid" | "pids" | "parent" | "token">>;
}

function summary(g: WitnessGroup): Overlap["groups"][number] {
  return { pgid: g.pgid, pids: [...g.pids], parent: g.parent, token: g.token };
}

export interface TokenRegression {
  atMs: number;
  pgid: number;
  token: number | null;
  previousMax: number;
}

export interface Leftover {
  pid: number;
  kind: "witness" | "leader-run" | "other";
  state: string;
  cmdline: string;
}

export interface SamplerResult {
  campaign: string;
  startedMs: number;
  endedMs: number;
  everyMs: number;
  samples: number;
  /** Longest time between two consecutive samples: the resolution actually achieved under load. */
  maxGapMs: number;
  overlaps: Overlap[];
  tokenRegressions: TokenRegression[];
  groups: WitnessGroup[];
  leftovers: Leftover[];
}

interface Known {
  firstSeen: number;
}

interface Witness {
  starttime: number;
  pgrp: number;
  groupKey: string;
}

const YOUNG_MS = 2000;
const SWEEP_MS = 200;

export class Sampler {
  private readonly known = new Map<number, Known>();
  private readonly witnesses = new Map<number, Witness>();
  private readonly groups = new Map<string, WitnessGroup>();
  private readonly overlaps: Overlap[] = [];
  private readonly regressions: TokenRegression[] = [];
  private readonly staleOverlaps = new Map<string, Overlap>();
  private prevTick = 0;
  private maxToken = -Infinity;
  private lastSweep = 0;
  private lastTick = 0;
  readonly startedMs = monoMs();
  samples = 0;
  maxGapMs = 0;

  constructor(
    readonly campaign: string,
    readonly marker: string,
    readonly everyMs: number,
    private readonly onGroup: (group: WitnessGroup) => void = () => undefined,
  ) {}

  /** New groups of the current sample, announced once the sample is complete. */
  private readonly announce: WitnessGroup[] = [];

  private isWitnessCmd(cmd: readonly string[] | undefined): boolean {
    if (cmd === undefined || cmd.length !== 2) return false;
    const [file = "", arg] = cmd;
    return (file === "sleep" || file.endsWith("/sleep")) && arg === this.marker;
  }

  private classify(pid: number, now: number): void {
    if (!this.isWitnessCmd(readCmdline(pid))) return;
    const stat = readStat(pid);
    const env = readEnviron(pid);
    if (stat === undefined || env === undefined || env.get(CAMPAIGN_ENV) !== this.campaign) return;
    if (!isLiveState(stat.state)) return;
    this.known.delete(pid);
    const key = `${stat.pgrp}/${stat.starttime}`;
    const sibling = [...this.witnesses.values()].find((w) => w.pgrp === stat.pgrp);
    let group = sibling === undefined ? undefined : this.groups.get(sibling.groupKey);
    if (group === undefined) {
      const raw = env.get("LEADER_RUN_FENCING_TOKEN");
      const token = raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : null;
      group = { key, pgid: stat.pgrp, pids: [], parent: stat.ppid, token, firstSeenMs: now, lastSeenMs: now };
      this.groups.set(key, group);
      this.announce.push(group);
      if (token === null || token <= this.maxToken) {
        this.regressions.push({ atMs: now, pgid: stat.pgrp, token, previousMax: this.maxToken });
      }
      if (token !== null) this.maxToken = Math.max(this.maxToken, token);
    }
    group.pids.push(pid);
    this.witnesses.set(pid, { starttime: stat.starttime, pgrp: stat.pgrp, groupKey: group.key });
  }

  tick(): void {
    const now = monoMs();
    if (this.lastTick > 0) this.maxGapMs = Math.max(this.maxGapMs, now - this.lastTick);
    this.lastTick = now;
    this.samples += 1;
    const pids = listPids();
    const current = new Set(pids);
    for (const pid of this.known.keys()) if (!current.has(pid)) this.known.delete(pid);
    const sweep = now - this.lastSweep >= SWEEP_MS;
    if (sweep) this.lastSweep = now;
    for (const pid of pids) {
      if (this.witnesses.has(pid)) continue;
      const k = this.known.get(pid);
      if (k === undefined) {
        this.known.set(pid, { firstSeen: now });
        this.classify(pid, now);
      } else if (sweep || now - k.firstSeen < YOUNG_MS) {
        // A process seen before its exec (the gate's sh, a forked node) can become the witness later.
        this.classify(pid, now);
      }
    }
    const alive = new Map<string, number[]>();
    for (const [pid, w] of this.witnesses) {
      const stat = readStat(pid);
      if (stat === undefined || stat.starttime !== w.starttime || !isLiveState(stat.state)) {
        this.witnesses.delete(pid);
        continue;
      }
      const list = alive.get(w.groupKey) ?? [];
      list.push(pid);
      alive.set(w.groupKey, list);
    }
    for (const key of alive.keys()) {
      const g = this.groups.get(key);
      if (g !== undefined) g.lastSeenMs = now;
    }
    // A copy is stale while a newer copy (a later term) is alive next to it. Each stale copy is one
    // overlap, however many successors it outlives: an orphan that survives a fault shows up once,
    // blamed on that fault, and does not hide the overlaps other faults cause meanwhile.
    const live = [...alive.keys()].map((k) => this.groups.get(k) as WitnessGroup);
    const rank = (g: WitnessGroup): [number, number] => [g.token ?? -1, g.firstSeenMs];
    const newer = (a: WitnessGroup, b: WitnessGroup): boolean => {
      const [ta, fa] = rank(a);
      const [tb, fb] = rank(b);
      return ta > tb || (ta === tb && fa > fb);
    };
    const dt = this.samples > 1 ? now - this.prevTick : 0;
    for (const g of live) {
      const successors = live.filter((h) => h !== g && newer(h, g));
      if (successors.length === 0) continue;
      let o = this.staleOverlaps.get(g.key);
      if (o === undefined) {
        o = { startMs: now, endMs: now, durationMs: 0, samples: 0, groups: [summary(g)] };
        this.staleOverlaps.set(g.key, o);
        this.overlaps.push(o);
      } else {
        o.durationMs += dt;
      }
      o.samples += 1;
      o.endMs = now;
      for (const h of successors) if (!o.groups.some((x) => x.pgid === h.pgid)) o.groups.push(summary(h));
    }
    this.prevTick = now;
    // Only now, with this sample's overlaps recorded: a driver told of a new group mid-sample could
    // act on the other groups (kill them) before this sample looked at them.
    for (const g of this.announce.splice(0)) this.onGroup(g);
  }

  /** Every live process carrying the campaign's marker in its environment. */
  campaignProcesses(): Leftover[] {
    const out: Leftover[] = [];
    for (const pid of listPids()) {
      if (pid === process.pid) continue;
      const env = readEnviron(pid);
      if (env?.get(CAMPAIGN_ENV) !== this.campaign) continue;
      const stat = readStat(pid);
      if (stat === undefined || !isLiveState(stat.state)) continue;
      const cmd = readCmdline(pid) ?? [];
      const kind = this.isWitnessCmd(cmd) ? "witness" : cmd.some((a) => a.endsWith("leader-run.js") || a.endsWith("bin/main.js")) ? "leader-run" : "other";
      out.push({ pid, kind, state: stat.state, cmdline: cmd.join(" ") });
    }
    return out;
  }

  result(leftovers: Leftover[]): SamplerResult {
    return {
      campaign: this.campaign,
      startedMs: this.startedMs,
      endedMs: monoMs(),
      everyMs: this.everyMs,
      samples: this.samples,
      maxGapMs: this.maxGapMs,
      overlaps: this.overlaps,
      tokenRegressions: this.regressions,
      groups: [...this.groups.values()],
      leftovers,
    };
  }
}

async function main(): Promise<void> {
  const [campaign, marker, every, out] = process.argv.slice(2);
  if (campaign === undefined || marker === undefined || every === undefined || out === undefined) {
    process.stderr.write("usage: sampler.ts <campaign-id> <witness-marker> <every-ms> <result.json>\n");
    process.exit(64);
  }
  try {
    // A sampler that the scheduler starves would miss short overlaps; as root, ask for a little priority.
    setPriority(-5);
  } catch {
    // not root: the recorded maxGapMs says what resolution was achieved
  }
  const everyMs = Number(every);
  // "seen <pgid> <token>" on stdout: lets a test wait until a witness was sampled instead of sleeping.
  const sampler = new Sampler(campaign, marker, everyMs, (g) => process.stdout.write(`seen ${g.pgid} ${g.token ?? "-"}\n`));
  let finishing: { deadline: number } | undefined;
  let done = false;
  const finish = (leftovers: Leftover[]): void => {
    if (done) return;
    done = true;
    writeFileSync(out, JSON.stringify(sampler.result(leftovers), null, 1));
    process.exit(0);
  };
  const loop = (): void => {
    const started = monoMs();
    sampler.tick();
    if (finishing !== undefined) {
      const left = sampler.campaignProcesses();
      if (left.length === 0 || monoMs() >= finishing.deadline) return finish(left);
    }
    setTimeout(loop, Math.max(0, everyMs - (monoMs() - started)));
  };
  sampler.tick();
  process.stdout.write("ready\n");
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    const m = /^finish (\d+)$/.exec(line.trim());
    if (m !== null) finishing = { deadline: monoMs() + Number(m[1]) };
  });
  rl.on("close", () => {
    if (finishing === undefined) finish(sampler.campaignProcesses());
  });
  setTimeout(loop, everyMs);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main();
}
