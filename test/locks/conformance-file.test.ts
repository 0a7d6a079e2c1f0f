import { mkdtemp, rm, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileBackend, fileCapabilities } from "../../src/locks/file/index.js";
import { FileMutex, type MutexHandle } from "../../src/locks/file/mutex.js";
import { conformance } from "./conformance.js";

let dir = "";
let held: MutexHandle[] = [];

conformance({
  title: "file",
  capabilities: fileCapabilities,
  async start() {
    dir = await mkdtemp(join(tmpdir(), "leader-run-conformance-"));
    return undefined;
  },
  async stop() {
    await rm(dir, { recursive: true, force: true });
  },
  open(name, identity, timing) {
    return fileBackend.open({ kind: "file", dir, url: `file:${dir}`, redacted: `file:${dir}` }, { name, identity, ...timing });
  },
  // A writer hung inside the critical section: every write waits for it (reads never lock, so a frozen
  // file lock still answers `get`, which the suite allows).
  async freeze(names) {
    for (const name of names) held.push(await new FileMutex(join(dir, `.${name}~lock`), { staleMs: 60_000 }).acquire());
  },
  async thaw() {
    const handles = held;
    held = [];
    await Promise.all(handles.map((h) => h.release()));
  },
  async deleteRecord(name) {
    await unlink(join(dir, name));
  },
});
