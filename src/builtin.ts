/**
 * Node built-in modules loaded at their first use instead of at import. A run that never spawns
 * anything or never writes (a --no-wait run that finds the lease taken, status, release) need not pay
 * for them (issue #13; test/cli/bundle.test.ts keeps them out of that path).
 */

/** node:child_process brings net, dgram and the stream machinery with it (≈ 6 ms of start-up). */
export function childProcess(): typeof import("node:child_process") {
  return process.getBuiltinModule("node:child_process");
}

/** node:crypto (≈ 5 ms of start-up). */
export function crypto(): typeof import("node:crypto") {
  return process.getBuiltinModule("node:crypto");
}

/**
 * Random hex for names that must differ between objects and processes but need no secrecy (writer
 * tokens, temp file names, the default identity's suffix): Math.random, seeded per process from the
 * system's entropy by V8, without loading node:crypto.
 */
export function randomHex(bytes: number): string {
  let out = "";
  while (out.length < bytes * 2) out += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, "0");
  return out.slice(0, bytes * 2);
}
