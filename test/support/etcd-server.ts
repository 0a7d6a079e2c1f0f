/**
 * Real etcd for tests: one member or a 3-member cluster on 127.0.0.1 with random free ports and temp
 * data dirs, optionally with TLS (certificates made with openssl) and authentication. Members can be
 * killed, paused (SIGSTOP), resumed and restarted from their data dir. Every process started here is
 * killed and every temp dir removed when the test process exits, even if a test forgets `stop()`.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TestContext } from "node:test";
import { promisify } from "node:util";
import { freePort, makeTempDir } from "./redis-server.js";

const run = promisify(execFile);
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

function which(binary: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${binary}`], { encoding: "utf8" });
  const path = r.stdout.trim();
  return r.status === 0 && path !== "" ? path : undefined;
}

export const ETCD = which("etcd");
export const ETCDCTL = which("etcdctl");
const OPENSSL = which("openssl");

/** True when the tests can run; otherwise skips the test (fails it under CI=true). */
export function requireEtcd(t: TestContext, opts: { tls?: boolean } = {}): boolean {
  const missing = ETCD === undefined || ETCDCTL === undefined ? "etcd/etcdctl not installed: apt-get install etcd-server etcd-client" : opts.tls && OPENSSL === undefined ? "openssl not installed" : undefined;
  if (missing === undefined) return true;
  if (process.env.CI === "true") throw new Error(missing);
  t.skip(missing);
  return false;
}

export function hasEtcd(): boolean {
  return ETCD !== undefined && ETCDCTL !== undefined;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface EtcdTls {
  dir: string;
  ca: string;
  /** Server certificate (also used as the client certificate in tests). */
  cert: string;
  key: string;
  clientCert: string;
  clientKey: string;
}

/** A CA plus server and client certificates for 127.0.0.1 / localhost, made with openssl. */
export async function makeCerts(dir = makeTempDir("leader-run-etcd-tls-")): Promise<EtcdTls> {
  const p = (name: string): string => join(dir, name);
  const ssl = (args: string[]): Promise<unknown> => run(OPENSSL ?? "openssl", args, { cwd: dir });
  await ssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=leader-run test CA"]);
  writeFileSync(p("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n");
  for (const who of ["server", "client"]) {
    await ssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", p(`${who}.key`), "-out", p(`${who}.csr`), "-subj", `/CN=${who === "server" ? "localhost" : "leader-run-client"}`]);
    await ssl(["x509", "-req", "-in", p(`${who}.csr`), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p(`${who}.pem`), "-days", "2", "-extfile", p("san.ext")]);
  }
  return { dir, ca: p("ca.pem"), cert: p("server.pem"), key: p("server.key"), clientCert: p("client.pem"), clientKey: p("client.key") };
}

export class EtcdMember {
  process: ChildProcess | undefined;
  exited: Promise<void> = Promise.resolve();
  paused = false;
  output = "";

  constructor(
    readonly index: number,
    readonly name: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dataDir: string,
    private readonly args: string[],
  ) {}

  get endpoint(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  start(): void {
    const child = spawn(ETCD ?? "etcd", this.args, { stdio: ["ignore", "ignore", "pipe"] });
    this.process = child;
    this.paused = false;
    live.add(child);
    child.stderr?.on("data", (chunk: Buffer) => {
      this.output = (this.output + chunk.toString("utf8")).slice(-20_000);
    });
    this.exited = new Promise((resolve) => {
      child.once("exit", () => {
        live.delete(child);
        resolve();
      });
    });
  }

  get running(): boolean {
    return this.process !== undefined && this.process.exitCode === null && this.process.signalCode === null;
  }

  async kill(): Promise<void> {
    if (!this.running) return;
    this.process?.kill("SIGKILL");
    await this.exited;
    this.paused = false;
  }

  /** SIGSTOP, and waits until every thread has actually stopped (signal delivery is asynchronous). */
  async pause(): Promise<void> {
    const pid = this.process?.pid;
    if (!this.running || pid === undefined) return;
    this.process?.kill("SIGSTOP");
    this.paused = true;
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      let allStopped = true;
      try {
        for (const task of readdirSync(`/proc/${pid}/task`)) {
          const stat = readFileSync(`/proc/${pid}/task/${task}/stat`, "utf8");
          const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
          if (state !== "T" && state !== "t") allStopped = false;
        }
      } catch {
        return; // no /proc (or the process is gone): nothing more to wait for
      }
      if (allStopped) return;
      await sleep(5);
    }
  }

  resume(): void {
    if (!this.running) return;
    this.process?.kill("SIGCONT");
    this.paused = false;
  }
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** `etcd://127.0.0.1:p1,127.0.0.1:p2,…` (or etcds://). */
  url: string;
  /** `127.0.0.1:port` of every member. */
  endpoints: string[];
  tls: EtcdTls | undefined;
  /** With `auth`: the root password and users created. */
  users: Record<string, string>;
  /** Runs etcdctl against the cluster (as root when auth is on, unless `user` says otherwise). */
  etcdctl(args: string[], opts?: { user?: string; endpoints?: string[]; timeoutMs?: number }): Promise<string>;
  /** Index of the current Raft leader among `members`. */
  leaderIndex(): Promise<number>;
  /** Waits until every running member reports healthy. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Restarts member `i` from its data dir (after kill, or kills it first). */
  restart(i?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface StartEtcdOptions {
  members?: 1 | 3;
  tls?: boolean;
  /**
   * Enables authentication with root (password "rootpw") and these users, each with a role allowed
   * readwrite on the given key prefix (or nothing, for a user without permissions).
   */
  auth?: { users: Record<string, { password: string; readwritePrefix?: string; readPrefix?: string }> };
}

/** Starts etcd and waits until it is healthy (and has a leader). Call `stop()` in an `after`. */
export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const count = opts.members ?? 1;
  const tls = opts.tls ? await makeCerts() : undefined;
  const scheme = tls ? "https" : "http";
  const root = makeTempDir("leader-run-etcd-");
  const ports: { client: number; peer: number }[] = [];
  for (let i = 0; i < count; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const token = `lr-${process.pid}-${ports[0]?.client}`;
  const initial = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(",");
  const members = ports.map((p, i) => {
    const dataDir = join(root, `m${i}`);
    const args = [
      "--name", `m${i}`,
      "--data-dir", dataDir,
      "--listen-client-urls", `${scheme}://127.0.0.1:${p.client}`,
      "--advertise-client-urls", `${scheme}://127.0.0.1:${p.client}`,
      "--listen-peer-urls", `http://127.0.0.1:${p.peer}`,
      "--initial-advertise-peer-urls", `http://127.0.0.1:${p.peer}`,
      "--initial-cluster", initial,
      "--initial-cluster-token", token,
      "--initial-cluster-state", "new",
      // Fast elections: a killed etcd leader is replaced within about a second.
      "--heartbeat-interval", "50",
      "--election-timeout", "500",
      "--logger", "zap",
      "--log-level", "error",
    ];
    if (tls) args.push("--cert-file", tls.cert, "--key-file", tls.key, "--trusted-ca-file", tls.ca, "--client-cert-auth");
    return new EtcdMember(i, `m${i}`, p.client, p.peer, dataDir, args);
  });
  for (const m of members) m.start();

  const endpoints = members.map((m) => m.endpoint);
  const users: Record<string, string> = {};
  const etcdctl = async (args: string[], o: { user?: string; endpoints?: string[]; timeoutMs?: number } = {}): Promise<string> => {
    const eps = (o.endpoints ?? members.filter((m) => m.running && !m.paused).map((m) => m.endpoint)).map((e) => `${scheme}://${e}`);
    const full = [`--endpoints=${eps.join(",")}`, `--command-timeout=${Math.ceil((o.timeoutMs ?? 3000) / 1000)}s`, `--dial-timeout=2s`];
    if (tls) full.push(`--cacert=${tls.ca}`, `--cert=${tls.clientCert}`, `--key=${tls.clientKey}`);
    // "" = no credentials (before auth is enabled).
    const user = o.user === "" ? undefined : (o.user ?? (opts.auth ? "root" : undefined));
    if (user !== undefined) full.push(`--user=${user}:${users[user] ?? ""}`);
    const { stdout } = await run(ETCDCTL ?? "etcdctl", [...full, ...args], { env: { ...process.env, ETCDCTL_API: "3" }, timeout: (o.timeoutMs ?? 3000) + 5000 });
    return stdout;
  };

  const waitHealthy = async (timeoutMs = 20_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      const up = members.filter((m) => m.running && !m.paused);
      for (const m of members) {
        if (m.process !== undefined && !m.running && !m.paused && up.length === 0) {
          throw new Error(`etcd ${m.name} exited: ${m.output.slice(-2000)}`);
        }
      }
      try {
        await run(ETCDCTL ?? "etcdctl", [
          `--endpoints=${up.map((m) => `${scheme}://${m.endpoint}`).join(",")}`,
          "--command-timeout=2s",
          "--dial-timeout=1s",
          ...(tls ? [`--cacert=${tls.ca}`, `--cert=${tls.clientCert}`, `--key=${tls.clientKey}`] : []),
          "endpoint",
          "health",
        ], { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 8000 });
        return;
      } catch (error) {
        last = error;
      }
      if (Date.now() > deadline) {
        throw new Error(`etcd did not become healthy within ${timeoutMs}ms: ${String(last)}\n${members.map((m) => m.output.slice(-1000)).join("\n")}`);
      }
      await sleep(100);
    }
  };

  const cluster: EtcdCluster = {
    members,
    url: `${tls ? "etcds" : "etcd"}://${endpoints.join(",")}`,
    endpoints,
    tls,
    users,
    etcdctl,
    waitHealthy,
    async leaderIndex(): Promise<number> {
      const out = await etcdctl(["endpoint", "status", "-w", "json"]);
      const statuses = JSON.parse(out) as { Endpoint: string; Status: { header: { member_id: number | string }; leader: number | string } }[];
      for (const s of statuses) {
        if (String(s.Status.header.member_id) === String(s.Status.leader)) {
          const i = members.findIndex((m) => s.Endpoint.endsWith(m.endpoint));
          if (i >= 0) return i;
        }
      }
      throw new Error(`no etcd leader among ${out}`);
    },
    async restart(i = 0): Promise<void> {
      const m = members[i];
      if (m === undefined) throw new Error(`no member ${i}`);
      await m.kill();
      m.start();
      await waitHealthy();
    },
    async stop(): Promise<void> {
      for (const m of members) {
        m.resume();
        m.process?.kill("SIGKILL");
      }
      await Promise.all(members.map((m) => m.exited));
    },
  };
  try {
    await waitHealthy();
    if (opts.auth) {
      users.root = "rootpw";
      await etcdctl(["user", "add", "root:rootpw"], { user: "" });
      for (const [name, u] of Object.entries(opts.auth.users)) {
        await etcdctl(["user", "add", `${name}:${u.password}`], { user: "" });
        await etcdctl(["role", "add", `${name}-role`], { user: "" });
        if (u.readwritePrefix !== undefined) {
          await etcdctl(["role", "grant-permission", `${name}-role`, "--prefix=true", "readwrite", u.readwritePrefix], { user: "" });
        }
        if (u.readPrefix !== undefined) {
          await etcdctl(["role", "grant-permission", `${name}-role`, "--prefix=true", "read", u.readPrefix], { user: "" });
        }
        await etcdctl(["user", "grant-role", name, `${name}-role`], { user: "" });
        users[name] = u.password;
      }
      await etcdctl(["auth", "enable"], { user: "" });
    }
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}
