/**
 * node:child_process, loaded at its first use instead of at import: it brings net, dgram and the
 * stream machinery with it (≈ 6 ms of start-up), which a run that never spawns anything (a --no-wait
 * run that finds the lease taken, status, release) need not pay for (issue #13; test/cli/bundle.test.ts
 * keeps it out of the CLI's static imports).
 */
export function childProcess(): typeof import("node:child_process") {
  return process.getBuiltinModule("node:child_process");
}
