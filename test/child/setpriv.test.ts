import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setprivTellsPdeathsig } from "../../src/child/supervisor.js";

// Whether setpriv supports --pdeathsig is read from its util-linux version instead of running it (a
// fork of the whole Node process on every start, issue #13); only a yes skips the run.

const dir = mkdtempSync(join(tmpdir(), "leader-run-setpriv-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function binary(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, Buffer.concat([Buffer.from([0x7f, 0x45, 0x4c, 0x46, 0, 1, 2]), Buffer.from(text, "latin1"), Buffer.from([0, 0xff, 0])]));
  return file;
}

describe("setprivTellsPdeathsig", () => {
  test("util-linux 2.33 and later say yes", () => {
    assert.equal(setprivTellsPdeathsig(binary("a", "\0util-linux 2.33\0")), true);
    assert.equal(setprivTellsPdeathsig(binary("b", "%s from %s\n\0util-linux 2.38.1\0")), true);
    assert.equal(setprivTellsPdeathsig(binary("c", "util-linux 2.40-rc1")), true);
    assert.equal(setprivTellsPdeathsig(binary("d", "util-linux 3.0")), true);
  });

  test("older util-linux, other programs and unreadable files leave it to the probe", () => {
    assert.equal(setprivTellsPdeathsig(binary("e", "util-linux 2.32.1")), false);
    assert.equal(setprivTellsPdeathsig(binary("f", "util-linux 2.3")), false);
    assert.equal(setprivTellsPdeathsig(binary("g", "BusyBox v1.36.1 setpriv")), false);
    assert.equal(setprivTellsPdeathsig(join(dir, "missing")), false);
    assert.equal(setprivTellsPdeathsig(dir), false);
  });

  test("agrees with running this host's setpriv when it says yes", (t) => {
    if (!existsSync("/usr/bin/setpriv")) {
      t.skip("no /usr/bin/setpriv");
      return;
    }
    const runs = spawnSync("/usr/bin/setpriv", ["--pdeathsig", "TERM", "--", "true"], { stdio: "ignore" }).status === 0;
    if (setprivTellsPdeathsig("/usr/bin/setpriv")) assert.equal(runs, true);
  });
});
