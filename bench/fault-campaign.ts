// The long fault campaign (issue #9): run by hand, figures go into docs/safety.md.
//   npm run fault -- --backend file|redis|etcd|postgres --faults 150 --seed N [--candidates 3] [--kinds a,b]
//                    [--include-unguardable] [--sample-every 5] [--json out.json] [--write-docs]
// `npm run fault` builds dist/ first. Exit 0 when the run shows no overlap (the unguardable faults'
// overlaps are reported, not counted), no token regression, no leftover and a leader again after every
// fault; 1 otherwise (the details name fault, seed and times).
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BACKENDS } from "../test/fault/backends.js";
import { CampaignUsageError, ROOT, runCampaign, type CampaignResult } from "../test/fault/campaign.js";
import { campaignHeader, expectedOverlaps, failureDetails, summaryTable } from "../test/fault/report.js";

const usage = "usage: npm run fault -- --backend file|redis|etcd|postgres --faults 150 --seed N [--candidates 3] [--kinds k1,k2] [--include-unguardable] [--sample-every 5] [--json out.json] [--write-docs]";
let values: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    options: {
      backend: { type: "string", default: "file" },
      faults: { type: "string", default: "150" },
      seed: { type: "string", default: String(Date.now() % 1e9) },
      candidates: { type: "string", default: "3" },
      kinds: { type: "string" },
      "include-unguardable": { type: "boolean", default: false },
      "sample-every": { type: "string", default: "5" },
      json: { type: "string" },
      "write-docs": { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  }).values;
}
try {
  values = parse();
} catch (error) {
  console.error(`${(error as Error).message}\n${usage}`);
  process.exit(64);
}
if (values.help) {
  console.log(usage);
  process.exit(0);
}
const backend = BACKENDS[values.backend];
const int = (name: string, raw: string): number => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} must be a whole number, not ${JSON.stringify(raw)}\n${usage}`);
    process.exit(64);
  }
  return n;
};
if (backend === undefined) {
  console.error(`--backend must be one of ${Object.keys(BACKENDS).join(", ")}, not ${JSON.stringify(values.backend)}\n${usage}`);
  process.exit(64);
}

let result: CampaignResult;
try {
  result = await runCampaign({
    backend,
    faults: int("faults", values.faults),
    seed: int("seed", values.seed),
    candidates: int("candidates", values.candidates),
    sampleEveryMs: int("sample-every", values["sample-every"]),
    ...(values.kinds === undefined ? {} : { kinds: values.kinds.split(",") }),
    includeUnguardable: values["include-unguardable"],
    log: (line) => console.log(line),
  });
} catch (error) {
  if (error instanceof CampaignUsageError) {
    console.error(`${error.message}\n${usage}`);
    process.exit(64);
  }
  console.error(`fault campaign failed to run: ${(error as Error).message}`);
  process.exit(70);
}

const header = campaignHeader(result);
const table = summaryTable(result);
const details = failureDetails(result);
console.log(`\n${header}\n\n${table}\n`);
const expected = expectedOverlaps(result);
if (expected !== "") console.log(expected);
if (details !== "") console.log(details);
if (values.json !== undefined) writeFileSync(values.json, JSON.stringify(result, null, 1));

if (values["write-docs"]) {
  // Replaces the block between the backend's markers in docs/safety.md, keeping everything else.
  const file = join(ROOT, "docs", "safety.md");
  const begin = `<!-- fault-campaign:${result.backend} -->`;
  const end = `<!-- /fault-campaign:${result.backend} -->`;
  const text = readFileSync(file, "utf8");
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) {
    console.error(`docs/safety.md has no ${begin} … ${end} block to fill`);
    process.exit(70);
  }
  const date = new Date().toISOString().slice(0, 10);
  const block = `${begin}\n${date}, node ${process.version}, ${header}.\n\n${table}\n${end}`;
  writeFileSync(file, text.slice(0, a) + block + text.slice(b + end.length));
  console.log(`docs/safety.md: ${result.backend} figures updated`);
}
process.exit(details === "" ? 0 : 1);
