/** Tables and failure details of a fault campaign, for the CI test, the long-campaign runner and docs/safety.md. */
import type { CampaignResult } from "./campaign.js";

/** Markdown table: one row per fault kind, then the total (leftovers are counted once, at the end of the run). */
export function summaryTable(result: CampaignResult): string {
  const rows = result.summary.map((s) => [result.unguardable.includes(s.kind) ? `${s.kind} (unguardable)` : s.kind, s.faults, s.overlaps, s.maxOverlapMs, s.tokenRegressions, "", s.stalls]);
  const sum = (f: (s: CampaignResult["summary"][number]) => number): number => result.summary.reduce((a, s) => a + f(s), 0);
  rows.push([
    "**total**",
    sum((s) => s.faults),
    sum((s) => s.overlaps),
    Math.max(0, ...result.summary.map((s) => s.maxOverlapMs)),
    sum((s) => s.tokenRegressions),
    result.leftovers.length,
    sum((s) => s.stalls),
  ]);
  const head = ["fault kind", "faults", "overlaps (stale copies)", "longest overlap ms", "token regressions", "leftovers", "no leader in 30 s"];
  const line = (cells: ReadonlyArray<string | number>): string => `| ${cells.join(" | ")} |`;
  return [line(head), line(head.map(() => "---")), ...rows.map(line)].join("\n");
}

export function campaignHeader(result: CampaignResult): string {
  const t = result.timing;
  return (
    `backend ${result.backend}, seed ${result.seed}, ${result.faults.length} faults, ${result.candidates} candidates, ` +
    `LD ${t.leaseDurationMs} ms, RD ${t.renewDeadlineMs} ms, RP ${t.retryPeriodMs} ms, ` +
    `sampler every ${result.sampler.everyMs} ms (${result.sampler.samples} samples, longest gap ${result.sampler.maxGapMs} ms, ` +
    `${result.sampler.groups} witness groups seen), ${Math.round(result.durationMs / 1000)} s`
  );
}

/** Overlaps of the unguardable faults (freeze-all): expected, reported, never a failure. */
export function expectedOverlaps(result: CampaignResult): string {
  return result.overlaps
    .filter((o) => o.fault !== undefined && result.unguardable.includes(o.fault.kind))
    .map((o) => `expected (unguardable ${o.fault?.kind}, fault #${o.fault?.index}): stale copy token ${o.groups[0]?.token} ran ${Math.round(o.durationMs)} ms next to token ${o.groups.slice(1).map((g) => g.token).join(", ")}`)
    .join("\n");
}

/** Everything needed to reproduce and understand a failed campaign: fault, seed, times, processes. */
export function failureDetails(result: CampaignResult): string {
  const out: string[] = [];
  const seed = `seed ${result.seed} (replay: npm run fault -- ${result.replay})`;
  for (const o of result.overlaps) {
    const f = o.fault;
    if (f !== undefined && result.unguardable.includes(f.kind)) continue;
    out.push(
      `OVERLAP: a stale copy ran next to ${o.groups.length - 1} newer one(s) from +${o.startMs} ms for ${Math.round(o.durationMs)} ms (${o.samples} samples) ` +
        `caused by fault #${f?.index ?? "-"} ${f?.kind ?? "(before the first fault)"} [${f?.target ?? ""}] started at +${f?.startMs ?? "?"} ms; ${seed}; ` +
        `stale: ${o.groups.slice(0, 1).map((g) => `pgid ${g.pgid} token ${g.token} from leader-run ${g.parent}`).join("")}; newer: ` +
        o.groups.slice(1).map((g) => `pgid ${g.pgid} token ${g.token} from leader-run ${g.parent}`).join(", "),
    );
  }
  for (const t of result.tokenRegressions) {
    out.push(`TOKEN REGRESSION at +${t.atMs} ms: group ${t.pgid} got token ${t.token}, after ${t.previousMax}, after fault #${t.fault?.index ?? "-"} ${t.fault?.kind ?? ""}; ${seed}`);
  }
  for (const l of result.leftovers) out.push(`LEFT BEHIND: ${l.kind} pid ${l.pid} [${l.state}] ${l.cmdline}`);
  for (const r of result.faults) {
    if (r.recoveredMs === null) out.push(`NO LEADER within the bound after fault #${r.index} ${r.kind} [${r.target}]; ${seed}`);
    if (r.error !== undefined) out.push(`FAULT ERROR #${r.index} ${r.kind}: ${r.error}`);
  }
  return out.join("\n");
}
