import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

// The bundled CLI (dist/bin/, npm run build) keeps yargs in a chunk of its own that only a dynamic
// import reaches: the common path (parse, run on the file lock, status, release, step-down) must
// never evaluate it, or start-up pays for yargs again (issue #13).

const BIN_DIR = fileURLToPath(new URL("../../dist/bin/", import.meta.url));

function source(file: string): string {
  return readFileSync(join(BIN_DIR, file), "utf8");
}

/** The chunks `file` imports statically, itself included (what evaluating it evaluates). */
function staticClosure(file: string, seen = new Set<string>()): Set<string> {
  if (seen.has(file)) return seen;
  seen.add(file);
  for (const m of source(file).matchAll(/^import\s*(?:[\s\S]*?\sfrom\s*)?"\.\/([^"]+)";/gm)) {
    if (m[1]) staticClosure(m[1], seen);
  }
  return seen;
}

function dynamicImports(file: string): string[] {
  return [...source(file).matchAll(/\bimport\("\.\/([^"]+)"\)/g)].map((m) => m[1] ?? "");
}

describe("dist/bin chunking", () => {
  it("yargs is only in a lazily imported chunk, outside the static graph of main and of the run, status, release and step-down paths", (t) => {
    if (!existsSync(join(BIN_DIR, "main.js"))) {
      t.skip("dist/ not built: npm run build");
      return;
    }
    const files = readdirSync(BIN_DIR).filter((f) => f.endsWith(".js"));
    const withYargs = files.filter((f) => source(f).includes("node_modules/yargs/"));
    assert.equal(withYargs.length, 1, `one chunk holds yargs: ${withYargs.join(", ")}`);
    const yargsChunk = withYargs[0] ?? "";
    assert.match(yargsChunk, /^yargs-/);
    assert.ok(!source(yargsChunk).includes("node_modules/yargs-parser/"), "yargs-parser is shared, not inside the yargs chunk");

    const main = staticClosure("main.js");
    // The four commands are in main's static graph (fewer chunks to load at start-up).
    assert.deepEqual(files.filter((f) => /^(run|status|release|step-down)-[A-Z0-9]+\.js$/.test(f)), [], "no chunk of its own per command");
    const fileLock = files.find((f) => /^file-/.test(f)) ?? "";
    const supervisor = files.find((f) => /^supervisor-/.test(f)) ?? "";
    for (const entry of [fileLock, supervisor]) {
      for (const chunk of staticClosure(entry, new Set(main))) assert.notEqual(chunk, yargsChunk, `${entry} reaches yargs statically`);
    }
    assert.ok(!main.has(yargsChunk));
    // And something does import it lazily (help, version, completion).
    assert.ok(files.some((f) => dynamicImports(f).includes(yargsChunk)), "a dynamic import of the yargs chunk");
  });

  it("ioredis and pg are bundled into the Redis and PostgreSQL chunks only, which nothing imports statically (loading them from node_modules cost twice the time)", (t) => {
    if (!existsSync(join(BIN_DIR, "main.js"))) {
      t.skip("dist/ not built: npm run build");
      return;
    }
    const files = readdirSync(BIN_DIR).filter((f) => f.endsWith(".js"));
    // main carries the four commands (statically); with the file lock, everything a file-lock run loads
    // before it starts a child.
    const reachable = staticClosure("main.js");
    const fileLock = files.find((f) => /^file-/.test(f)) ?? "";
    staticClosure(fileLock, reachable);
    for (const [pkg, chunkName] of [
      ["ioredis", /^redis-/],
      ["pg", /^postgres-/],
    ] as const) {
      const holders = files.filter((f) => source(f).includes(`node_modules/${pkg}/`));
      assert.equal(holders.length, 1, `one chunk holds ${pkg}: ${holders.join(", ")}`);
      assert.match(holders[0] ?? "", chunkName);
      assert.ok(!reachable.has(holders[0] ?? ""), `${holders[0]} is reached statically from main, a command or the file lock`);
      for (const f of files) assert.ok(!new RegExp(`from "${pkg}"|require\\("${pkg}"\\)`).test(source(f)), `${f} loads ${pkg} from node_modules`);
    }
  });

  it("a --no-wait run imports neither the child supervisor nor node:child_process or node:net before its first lease read", (t) => {
    if (!existsSync(join(BIN_DIR, "main.js"))) {
      t.skip("dist/ not built: npm run build");
      return;
    }
    // Everything a --no-wait run on the file lock evaluates up to its first read: main (the run
    // command with it) and the file lock, with what they import statically. A loser (the lease is taken) ends
    // there and must not pay for spawning machinery it never uses (issue #13).
    const files = readdirSync(BIN_DIR).filter((f) => f.endsWith(".js"));
    const fileLock = files.find((f) => /^file-/.test(f)) ?? "";
    const supervisor = files.find((f) => /^supervisor-/.test(f)) ?? "";
    assert.ok(fileLock && supervisor, `file and supervisor chunks: ${files.join(", ")}`);
    const closure = new Set([...staticClosure("main.js"), ...staticClosure(fileLock)]);
    assert.ok(!closure.has(supervisor), "the supervisor chunk is imported statically");
    for (const chunk of closure) {
      for (const builtin of ["child_process", "net", "dgram"]) {
        assert.ok(!new RegExp(`^import\\s[^;]*?from\\s*"(node:)?${builtin}";`, "m").test(source(chunk)), `${chunk} imports node:${builtin} statically`);
      }
    }
    // The supervisor itself is a dynamic import of the run command, loaded when a child is started.
    assert.ok([...closure].some((f) => dynamicImports(f).includes(supervisor)), `${supervisor} is imported lazily`);
  });

  it("a --no-wait run that finds the lease taken exits 75 without loading node:child_process, node:net or node:crypto", async (t) => {
    const bin = fileURLToPath(new URL("../../bin/leader-run.js", import.meta.url));
    if (!existsSync(join(BIN_DIR, "main.js"))) {
      t.skip("dist/ not built: npm run build");
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), "leader-run-bundle-"));
    const holder = spawn(process.execPath, [bin, "--quiet", "--lock", `file:${dir}`, "--name", "held", "--identity", "holder", "--", "sleep", "30"], { stdio: "ignore" });
    try {
      const deadline = Date.now() + 10_000;
      while (!(existsSync(join(dir, "held")) && readFileSync(join(dir, "held"), "utf8").includes('"holder"'))) {
        assert.ok(Date.now() < deadline, "the holder did not acquire the lease within 10 s");
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Reports, at exit, the built-in modules and bundle chunks the process loaded.
      const report = join(dir, "loaded.json");
      const preload = join(dir, "preload.cjs");
      writeFileSync(preload, `process.on("exit", () => require("node:fs").writeFileSync(${JSON.stringify(report)}, JSON.stringify(process.moduleLoadList)));\n`);
      // stderr to a file, as cron's usually is: a pipe for stdio loads node:net by itself.
      const errFile = join(dir, "stderr");
      const errFd = openSync(errFile, "w");
      const r = spawnSync(process.execPath, ["--require", preload, bin, "--lock", `file:${dir}`, "--name", "held", "--no-wait", "--", "true"], { stdio: ["ignore", "ignore", errFd] });
      closeSync(errFd);
      assert.equal(r.status, 75, readFileSync(errFile, "utf8"));
      const loaded = JSON.parse(readFileSync(report, "utf8")) as string[];
      for (const builtin of ["child_process", "net", "dgram", "crypto"]) assert.ok(!loaded.includes(`NativeModule ${builtin}`), `node:${builtin} was loaded`);
    } finally {
      holder.kill("SIGTERM");
      await new Promise((resolve) => holder.once("exit", resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
