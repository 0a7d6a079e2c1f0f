// Start-up time and idle memory of the leader-run command on the file lock.
// Run by hand after `npm run build`: node bench/startup.mjs [runs]
// Prints medians; figures go into docs/performance.md.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const runs = Number(process.argv[2] ?? 20);
const bin = fileURLToPath(new URL("../bin/leader-run.js", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "leader-run-bench-"));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function time(args) {
  const samples = [];
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    const r = spawnSync(process.execPath, args, { stdio: "ignore" });
    if (r.status !== 0) throw new Error(`${args.join(" ")} exited ${r.status}`);
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return samples;
}

const baseline = time(["-e", ""]);
const trueRun = time([bin, "--quiet", "--lock", `file:${dir}`, "--name", "bench-true", "--", "true"]);

// RSS counts the shared node binary in full; PSS and private memory are what a process really costs.
function memKiB(pid) {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? NaN);
  return { rss: field("Rss"), pss: field("Pss"), priv: field("Private_Clean") + field("Private_Dirty") };
}
const fmt = ({ rss, pss, priv }) => `RSS ${(rss / 1024).toFixed(1)} MiB, PSS ${(pss / 1024).toFixed(1)} MiB, private ${(priv / 1024).toFixed(1)} MiB`;

const child = spawn(process.execPath, [bin, "--quiet", "--lock", `file:${dir}`, "--name", "bench-sleep", "--", "sleep", "60"], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 5000));
const leaderMem = memKiB(child.pid);
// The watchdog is a second, tiny node process started next to the child.
const ps = spawnSync("pgrep", ["-f", "watchdog-process.cjs"], { encoding: "utf8" }).stdout.trim().split("\n").filter(Boolean);
const watchdogMem = ps.map(Number).map(memKiB);
child.kill("SIGTERM");
await new Promise((r) => child.once("exit", r));
rmSync(dir, { recursive: true, force: true });

console.log(`node ${process.version}, ${runs} runs`);
console.log(`node -e "" (baseline):        median ${median(baseline).toFixed(0)} ms`);
console.log(`leader-run -- true (file lock): median ${median(trueRun).toFixed(0)} ms, min ${Math.min(...trueRun).toFixed(0)} ms`);
console.log(`idle leader-run -- sleep 60:    ${fmt(leaderMem)}`);
for (const m of watchdogMem) console.log(`  its watchdog process:          ${fmt(m)}`);
