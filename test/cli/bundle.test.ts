import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync } from "node:fs";
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
    const commands = dynamicImports("main.js").filter((f) => /^(run|status|release|step-down)-/.test(f));
    assert.equal(commands.length, 4, `main imports the four commands lazily: ${dynamicImports("main.js").join(", ")}`);
    const fileLock = files.find((f) => /^file-/.test(f)) ?? "";
    const supervisor = files.find((f) => /^supervisor-/.test(f)) ?? "";
    for (const entry of [...commands, fileLock, supervisor]) {
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
    const main = staticClosure("main.js");
    const reachable = new Set(main);
    for (const f of dynamicImports("main.js")) if (/^(run|status|release|step-down)-/.test(f)) staticClosure(f, reachable);
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
});
