#!/usr/bin/env node
// The installed command. All logic lives in the compiled dist/cli/main.js; this file only loads it,
// so start-up stays fast (leader-run runs on every cron tick).
let cli;
try {
  cli = await import("../dist/cli/main.js");
} catch (err) {
  const missing = err && err.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes("dist/cli/main.js");
  if (!missing) throw err;
  process.stderr.write("leader-run: not built yet (dist/cli/main.js is missing); run `npm run build` first\n");
  process.exitCode = 70;
}
if (cli) process.exitCode = await cli.main(process.argv.slice(2));
