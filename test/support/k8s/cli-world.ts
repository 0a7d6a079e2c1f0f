/**
 * A world for end-to-end tests of `leader-run --lock kubernetes:` against the test API server: spawns the
 * real `bin/leader-run.js` (compiled dist/) with a kubeconfig for the server, tracks every process, and
 * cleans up after each test. Builds on the e2e harness (test/e2e/support.ts) for processes and child events.
 */
import { spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  assertBuilt,
  BIN,
  CHILD,
  cleanupRuns,
  LeaderRunProcess,
  readChildEvents,
  waitForChildEvent,
  type ChildEvent,
} from "../../e2e/support.js";
import type { LeaseApiServer } from "../lease-api-server.js";

export { LeaderRunProcess };

/** renewDeadline + killGrace < leaseDuration, as the CLI demands. */
export const K8S_TIMING = ["--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "300ms", "--kill-grace", "500ms"];
export const K8S_LEASE_MS = 3000;
export const K8S_RENEW_DEADLINE_MS = 2000;
export const K8S_RETRY_MS = 300;

export class KubernetesWorld {
  readonly name: string;
  readonly eventsFile: string;
  readonly kubeconfig: string;
  private readonly procs: LeaderRunProcess[] = [];
  private static count = 0;

  private constructor(
    readonly work: string,
    readonly server: LeaseApiServer,
    token: string | undefined,
  ) {
    KubernetesWorld.count += 1;
    this.name = `k8s-e2e-${process.pid}-${KubernetesWorld.count}`;
    this.eventsFile = join(work, "events.log");
    this.kubeconfig = server.writeKubeconfig(join(work, "kubeconfig.json"), { token });
  }

  static async create(server: LeaseApiServer, token?: string): Promise<KubernetesWorld> {
    assertBuilt();
    return new KubernetesWorld(await mkdtemp(join(tmpdir(), "leader-run-k8s-e2e-")), server, token);
  }

  /** A kubeconfig for another token, in this world's directory. */
  kubeconfigFor(token: string): string {
    KubernetesWorld.count += 1;
    return this.server.writeKubeconfig(join(this.work, `kubeconfig-${KubernetesWorld.count}.json`), { token });
  }

  spawn(label: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): LeaderRunProcess {
    const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
    for (const key of Object.keys(childEnv)) {
      if ((key.startsWith("LEADER_RUN_") || key.startsWith("KUBERNETES_") || key === "POD_NAME") && !(key in env)) {
        delete childEnv[key];
      }
    }
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "pipe", "pipe"], env: childEnv, cwd: this.work });
    const p = new LeaderRunProcess(label, child);
    this.procs.push(p);
    return p;
  }

  child(tag: string, sleepMarker: string): string[] {
    return ["sh", CHILD, this.eventsFile, tag, sleepMarker];
  }

  /** leader-run on this world's Lease, JSON logs, the short timings unless `timing` is given. */
  run(
    identity: string | undefined,
    command: readonly string[],
    options: { extra?: readonly string[]; timing?: readonly string[]; env?: NodeJS.ProcessEnv; kubeconfig?: string } = {},
  ): LeaderRunProcess {
    const args = [
      "--lock",
      "kubernetes:",
      "--kubeconfig",
      options.kubeconfig ?? this.kubeconfig,
      "--namespace",
      "default",
      "--name",
      this.name,
      ...(identity === undefined ? [] : ["--identity", identity]),
      "--log-format",
      "json",
      ...(options.timing ?? K8S_TIMING),
      ...(options.extra ?? []),
      "--",
      ...command,
    ];
    return this.spawn(identity ?? "leader-run", args, options.env);
  }

  lease(): { metadata: Record<string, unknown>; spec: Record<string, unknown> } | undefined {
    return this.server.getLease("default", this.name) as { metadata: Record<string, unknown>; spec: Record<string, unknown> } | undefined;
  }

  childEvents(): Promise<ChildEvent[]> {
    return readChildEvents(this.eventsFile);
  }

  waitForChildEvent(what: string, pred: (e: ChildEvent) => boolean, timeoutMs = 20_000): Promise<ChildEvent> {
    return waitForChildEvent(this.eventsFile, what, pred, timeoutMs);
  }

  /** Kills what a test left running; returns what had to be killed. */
  cleanup(): Promise<string[]> {
    return cleanupRuns(this.procs, this.work);
  }
}

// The overlap sampler is the e2e suite's: one definition of "two children alive at once".
export { overlapSampler } from "../../e2e/support.js";
