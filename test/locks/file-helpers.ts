import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LeaderElectionRecord } from "../../src/election/record.js";
import { parseProcStat } from "../../src/locks/file/process.js";

/** A private temp directory (mode 0700, as mkdtemp makes it) removed by `cleanup`. */
export async function tempDir(prefix = "leader-run-file-"): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export function record(holder: string, leaderTransitions = 1, leaseDurationSeconds = 15): LeaderElectionRecord {
  const now = new Date();
  return { holderIdentity: holder, leaseDurationSeconds, acquireTime: now, renewTime: now, leaderTransitions };
}

/** Tracks spawned processes so every one is killed in `after`, even when a test fails. */
export class Processes {
  /** child → whether it leads its own process group (killed as a group). */
  private readonly children = new Map<ChildProcess, boolean>();

  /** A Node process that idles until killed; `detached` gives it its own process group. */
  sleeper(detached = false): ChildProcess {
    const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1e6)"], { stdio: "ignore", detached });
    return this.track(child, detached);
  }

  track(child: ChildProcess, groupLeader = false): ChildProcess {
    this.children.set(child, groupLeader);
    child.once("exit", () => this.children.delete(child));
    return child;
  }

  /** SIGKILLs the process (its whole group when it leads one) and waits until it has been reaped. */
  async kill(child: ChildProcess): Promise<void> {
    const group = this.children.get(child) === true;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    try {
      if (group && child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      else child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await exited;
  }

  async killAll(): Promise<void> {
    await Promise.all([...this.children.keys()].map((c) => this.kill(c)));
  }
}

export async function startTimeOf(pid: number): Promise<number> {
  const stat = parseProcStat(await readFile(`/proc/${pid}/stat`, "utf8"));
  if (stat === null) throw new Error(`cannot parse /proc/${pid}/stat`);
  return stat.startTime;
}

/** Polls `predicate` every 20 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
