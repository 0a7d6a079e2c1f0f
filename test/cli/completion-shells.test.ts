import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test, type TestContext } from "node:test";
import { BIN, assertBuilt } from "../e2e/support.js";

/**
 * Issue #14: `leader-run completion zsh|fish` loaded into the real shells, asked what they offer for a
 * few command lines: options, an option's values (not subcommands), subcommands, and nothing of ours
 * after `--`. fish answers `complete -C` itself. zsh has no such command: its completion functions run
 * only inside the line editor, so the test loads the script after compinit, checks that it registered
 * for leader-run, and calls the registered function with `words`/`CURRENT` set as the editor sets
 * them, capturing what it hands to `compadd` (and to `_files`, the file-name fallback).
 *
 * Uses the built CLI (bin/leader-run.js, `npm run build`) as `leader-run` on PATH.
 */

function which(name: string): string | undefined {
  try {
    return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function requireShell(t: TestContext, shell: string): boolean {
  if (which(shell) !== undefined) return true;
  const message = `${shell} not installed: apt-get install ${shell}`;
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return false;
}

const work = mkdtempSync(join(tmpdir(), "leader-run-completion-"));
const binDir = join(work, "bin");
const cwd = join(work, "cwd");
mkdirSync(binDir);
mkdirSync(cwd);
// A file in the working directory: what a file-name fallback offers.
writeFileSync(join(cwd, "somefile"), "");
writeFileSync(join(binDir, "leader-run"), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} "$@"\n`);
chmodSync(join(binDir, "leader-run"), 0o755);
after(() => rmSync(work, { recursive: true, force: true }));

/** The command lines asked about, and what each must offer ("<files>": the shell's file names). */
const CASES: { line: string; offers: string[] }[] = [
  { line: "leader-run --res", offers: ["--restart", "--restart-delay"] },
  { line: "leader-run --restart ", offers: ["always", "never", "on-failure"] },
  { line: "leader-run run --kill-signal SIGT", offers: ["SIGTERM"] },
  { line: "leader-run st", offers: ["status", "step-down"] },
  { line: "leader-run status --out", offers: ["--output"] },
  { line: "leader-run -- ", offers: ["<files>"] },
  { line: "leader-run -q -- --lo", offers: ["<files>"] },
];

/** Runs `script` in `shell`; stdout split into the blocks `== <line>` opens. */
function ask(shell: string, args: string[]): Map<string, string[]> {
  assertBuilt();
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${binDir}:${process.env.PATH ?? ""}`, HOME: work, XDG_CONFIG_HOME: join(work, "config") };
  for (const key of Object.keys(env)) if (key.startsWith("LEADER_RUN_")) delete env[key];
  const r = spawnSync(shell, args, { cwd, env, encoding: "utf8", timeout: 240_000 });
  assert.equal(r.status, 0, `${shell} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  const blocks = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of r.stdout.split("\n")) {
    if (line.startsWith("== ")) blocks.set(line.slice(3), (current = []));
    else if (line !== "" && current) current.push(line);
    else if (line !== "") blocks.set(`(before) ${line}`, []);
  }
  return blocks;
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

describe("completion in the real shells", () => {
  test("fish: complete -C offers options, their values, subcommands, and only file names after --", { timeout: 300_000 }, (t) => {
    if (!requireShell(t, "fish")) return;
    // `or true`: string replace fails when there is nothing to replace (no candidates).
    const lines = CASES.map((c) => `echo "== ${c.line}"; complete -C "${c.line}" | string replace -r '\\t.*' ''; or true`).join("\n");
    const blocks = ask("fish", ["--no-config", "-c", `leader-run completion fish | source\n${lines}`]);
    for (const c of CASES) {
      const got = blocks.get(c.line);
      assert.ok(got, `no answer for "${c.line}"`);
      // fish lists the working directory's files that match the word itself when we offer nothing.
      const word = c.line.split(" ").at(-1) ?? "";
      const expected = c.offers.flatMap((o) => (o === "<files>" ? ["somefile"].filter((f) => f.startsWith(word)) : [o]));
      assert.deepEqual(sorted(got), sorted(expected), `"${c.line}"`);
    }
  });

  test("zsh: the script registers for leader-run and hands compadd the options, their values, subcommands, and nothing after --", { timeout: 300_000 }, (t) => {
    if (!requireShell(t, "zsh")) return;
    const script = [
      "autoload -Uz compinit && compinit -u -D",
      "source <(leader-run completion zsh)",
      'print -r -- "== registered"; print -r -- ${_comps[leader-run]}',
      // What the line editor would receive: every word given to compadd, and the file-name fallback.
      'compadd() { local a; for a in "$@"; do [[ $a == -- ]] && continue; print -r -- "$a"; done }',
      '_files() { print -r -- "<files>" }',
      'ask() { local -a words; words=(${(z)1}); [[ $1 == *" " ]] && words+=(""); local CURRENT=${#words}; print -r -- "== $1"; ${_comps[leader-run]} }',
      ...CASES.map((c) => `ask ${JSON.stringify(c.line)}`),
    ].join("\n");
    const blocks = ask("zsh", ["-f", "-c", script]);
    assert.deepEqual(blocks.get("registered"), ["_leader_run"]);
    for (const c of CASES) {
      const got = blocks.get(c.line);
      assert.ok(got, `no answer for "${c.line}"`);
      assert.deepEqual(sorted(got), sorted(c.offers), `"${c.line}"`);
    }
  });
});
