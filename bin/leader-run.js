#!/usr/bin/env node
// The installed command. The CLI is bundled into dist/bin/ (one file plus lazily loaded chunks per
// backend) because leader-run starts on every cron run and resolving a few hundred small modules
// costs more than everything else it does before the child starts.
let cli;
try {
  cli = await import("../dist/bin/main.js");
} catch (err) {
  const missing = err && err.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes("dist/bin/main.js");
  if (!missing) throw err;
  process.stderr.write("leader-run: not built yet (dist/bin/main.js is missing); run `npm run build` first\n");
  process.exitCode = 70;
}
if (cli) {
  process.exitCode = await cli.main(process.argv.slice(2));
  // A lock call that never returned (a hung mount) would keep the process from exiting: end by a signal.
  cli.endIfHung?.(process.exitCode);
}
