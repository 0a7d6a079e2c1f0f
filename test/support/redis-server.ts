/**
 * Real Redis servers for tests: standalone, master + replica + Sentinels, and Cluster, each on
 * 127.0.0.1 with random free ports and its own temp dir. Every process started here is killed when the
 * test process exits, even if a test forgets (or fails before) `stop()`.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.once("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function which(binary: string): string | undefined {
  const r = spawnSync("sh", ["-c", `command -v ${binary}`], { encoding: "utf8" });
  const path = r.stdout.trim();
  return r.status === 0 && path !== "" ? path : undefined;
}

export const REDIS_SERVER = which("redis-server");
export const REDIS_CLI = which("redis-cli");

/**
 * True when the tests can run. Otherwise skips the test (or, on CI, fails it: a missing binary there
 * must not turn into a green run).
 */
export function requireRedis(t: TestContext): boolean {
  if (REDIS_SERVER !== undefined && REDIS_CLI !== undefined) return true;
  const message = "redis-server not installed: apt-get install redis-server";
  if (process.env.CI === "true") throw new Error(message);
  t.skip(message);
  return false;
}

export function hasRedis(): boolean {
  return REDIS_SERVER !== undefined && REDIS_CLI !== undefined;
}

function ephemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Ports this process already handed out: concurrent starts (a Cluster's nodes) must not get the same one. */
const handedOut = new Set<number>();

/**
 * A port that was free a moment ago and that this process has not handed out before. Another process
 * can still take it before it is used: `RedisServer.start` checks that the server answering on it is
 * the one it started.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const port = await ephemeralPort();
    if (!handedOut.has(port) || attempt >= 50) {
      handedOut.add(port);
      return port;
    }
  }
}

export function makeTempDir(prefix = "leader-run-redis-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface Reply {
  kind: "simple" | "error" | "integer" | "bulk";
  /** The payload; null for a nil bulk string. */
  text: string | null;
  /** The reply as it came over the wire. */
  raw: string;
}

const CRLF = Buffer.from("\r\n");

/** One complete RESP2 reply (no arrays) at the start of `buf`, or undefined while it is incomplete. */
function parseReply(buf: Buffer): { reply: Reply; length: number } | undefined {
  const eol = buf.indexOf(CRLF);
  if (eol < 0) return undefined;
  const head = buf.subarray(1, eol).toString("utf8");
  const type = String.fromCharCode(buf[0] ?? 0);
  const simple = (kind: Reply["kind"]): { reply: Reply; length: number } => ({
    reply: { kind, text: head, raw: buf.subarray(0, eol + 2).toString("utf8") },
    length: eol + 2,
  });
  if (type === "+") return simple("simple");
  if (type === "-") return simple("error");
  if (type === ":") return simple("integer");
  if (type === "$") {
    const size = Number(head);
    if (size < 0) return { reply: { kind: "bulk", text: null, raw: buf.subarray(0, eol + 2).toString("utf8") }, length: eol + 2 };
    const end = eol + 2 + size + 2;
    // A large reply (INFO) can arrive in several chunks, and its lines end in CRLF too: wait for all of it.
    if (buf.length < end) return undefined;
    return { reply: { kind: "bulk", text: buf.subarray(eol + 2, eol + 2 + size).toString("utf8"), raw: buf.subarray(0, end).toString("utf8") }, length: end };
  }
  throw new Error(`unexpected reply type ${JSON.stringify(type)}`);
}

function encodeCommand(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join("")}`;
}

/** Sends `commands` on one connection and resolves with their complete replies. */
export function redisCommands(port: number, commands: string[][], timeoutMs = 1000): Promise<Reply[]> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: "127.0.0.1", port });
    let data = Buffer.alloc(0);
    const replies: Reply[] = [];
    const what = commands.map((c) => c[0]).join(", ");
    const finish = (settle: () => void): void => {
      clearTimeout(timer);
      socket.destroy();
      settle();
    };
    const timer = setTimeout(() => finish(() => reject(new Error(`no reply from 127.0.0.1:${port} to ${what}`))), timeoutMs);
    socket.on("connect", () => socket.write(commands.map(encodeCommand).join("")));
    socket.on("data", (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      try {
        for (let parsed = parseReply(data); parsed !== undefined; parsed = parseReply(data)) {
          replies.push(parsed.reply);
          data = data.subarray(parsed.length);
        }
      } catch (error) {
        finish(() => reject(error));
        return;
      }
      if (replies.length >= commands.length) finish(() => resolve(replies));
    });
    socket.on("error", (error) => finish(() => reject(error)));
  });
}

/** Sends one command (split on spaces) and resolves with its complete raw reply. */
export async function rawCommand(port: number, command: string, timeoutMs = 1000): Promise<string> {
  const [reply] = await redisCommands(port, [command.split(" ")], timeoutMs);
  return reply?.raw ?? "";
}

/** The server answering on the port is another process than the one `RedisServer` started there. */
export class PortTakenError extends Error {}

/** Runs redis-cli against a port; resolves with stdout (throws with stderr on failure). */
export async function redisCli(port: number, args: string[], options: { password?: string; timeoutMs?: number } = {}): Promise<string> {
  if (REDIS_CLI === undefined) throw new Error("redis-cli not installed");
  const env = { ...process.env };
  if (options.password !== undefined) env.REDISCLI_AUTH = options.password;
  return new Promise((resolve, reject) => {
    const child = spawn(REDIS_CLI, ["-h", "127.0.0.1", "-p", String(port), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 10_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out.trim());
      else reject(new Error(`redis-cli ${args.join(" ")} exited ${code}: ${err.trim() || out.trim()}`));
    });
  });
}

export interface RedisServerOptions {
  /** appendonly yes + appendfsync always: every write survives a crash. */
  aof?: boolean;
  /** requirepass for the default user. */
  password?: string;
  /** Extra config lines (e.g. `user alice on >pw ~* +@all`). */
  config?: string[];
  cluster?: boolean;
  sentinel?: boolean;
  /** For a replica: the master's port. */
  replicaOf?: number;
  /** A fixed port (default: a random free one). */
  port?: number;
  /** Also listen with TLS on `tlsPort` (the plain port stays, for readiness checks and admin). */
  tls?: TestCertificates & { authClients: "no" | "optional" | "yes" };
}

export interface TestCertificates {
  caFile: string;
  certFile: string;
  keyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
}

export const OPENSSL = which("openssl");

/** A throw-away CA with a server certificate for 127.0.0.1/localhost and a client certificate. */
export function makeTestCertificates(): TestCertificates {
  if (OPENSSL === undefined) throw new Error("openssl not installed");
  const dir = makeTempDir("leader-run-tls-");
  const f = (name: string): string => join(dir, name);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const run = (args: string[]): void => {
    execFileSync(OPENSSL, args, { stdio: "ignore" });
  };
  run(["req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.crt"), "-days", "2", "-subj", "/CN=leader-run-test-ca"]);
  writeFileSync(f("server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  for (const who of ["server", "client"]) {
    run(["req", ...ec, "-keyout", f(`${who}.key`), "-out", f(`${who}.csr`), "-subj", `/CN=${who === "server" ? "localhost" : "leader-run-client"}`]);
    const ext = who === "server" ? ["-extfile", f("server.ext")] : [];
    run(["x509", "-req", "-in", f(`${who}.csr`), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f(`${who}.crt`), "-days", "2", ...ext]);
  }
  return {
    caFile: f("ca.crt"),
    certFile: f("server.crt"),
    keyFile: f("server.key"),
    clientCertFile: f("client.crt"),
    clientKeyFile: f("client.key"),
  };
}

/** One redis-server (or sentinel) process; `restart()` keeps its port and data dir. */
export class RedisServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: RedisServerOptions,
    readonly busPort: number | undefined,
    readonly tlsPort: number | undefined,
  ) {}

  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    for (let attempt = 1; ; attempt++) {
      const port = options.port ?? (await freePort());
      const busPort = options.cluster ? await freePort() : undefined;
      const tlsPort = options.tls ? await freePort() : undefined;
      const server = new RedisServer(port, makeTempDir(), options, busPort, tlsPort);
      try {
        await server.launch();
        return server;
      } catch (error) {
        await server.kill();
        // A fixed port held by someone else stays taken: retrying there would only hide the reason.
        if (attempt >= 3 || (error instanceof PortTakenError && options.port !== undefined)) throw error;
      }
    }
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  private writeConfig(): string {
    const o = this.options;
    const lines = [
      `port ${this.port}`,
      "bind 127.0.0.1",
      `dir ${this.dir}`,
      "daemonize no",
      `logfile ${join(this.dir, "redis.log")}`,
      "protected-mode no",
    ];
    if (!o.sentinel) {
      lines.push('save ""');
      lines.push(o.aof ? "appendonly yes" : "appendonly no");
      if (o.aof) lines.push("appendfsync always");
      if (o.password !== undefined) lines.push(`requirepass ${o.password}`);
      if (o.cluster) {
        lines.push("cluster-enabled yes", `cluster-config-file ${join(this.dir, "nodes.conf")}`, "cluster-node-timeout 2000");
        lines.push(`cluster-port ${this.busPort ?? 0}`);
      }
      if (o.tls) {
        lines.push(`tls-port ${this.tlsPort ?? 0}`, `tls-cert-file ${o.tls.certFile}`, `tls-key-file ${o.tls.keyFile}`);
        lines.push(`tls-ca-cert-file ${o.tls.caFile}`, `tls-auth-clients ${o.tls.authClients}`);
      }
      if (o.replicaOf !== undefined) lines.push(`replicaof 127.0.0.1 ${o.replicaOf}`, "repl-diskless-sync-delay 0");
      else lines.push("repl-diskless-sync-delay 0");
    }
    lines.push(...(o.config ?? []));
    const file = join(this.dir, o.sentinel ? "sentinel.conf" : "redis.conf");
    // Sentinel rewrites its config: write it once, keep its state across restarts.
    if (!(o.sentinel && existsSync(file))) writeFileSync(file, `${lines.join("\n")}\n`);
    return file;
  }

  private async launch(): Promise<void> {
    if (REDIS_SERVER === undefined) throw new Error("redis-server not installed");
    const conf = this.writeConfig();
    const args = this.options.sentinel ? [conf, "--sentinel"] : [conf];
    const child = spawn(REDIS_SERVER, args, { stdio: "ignore" });
    this.child = child;
    live.add(child);
    this.exited = new Promise((resolve) => {
      child.once("exit", () => {
        live.delete(child);
        if (this.child === child) this.child = undefined;
        resolve();
      });
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (this.child !== child) throw new Error(`redis-server on port ${this.port} exited at start: ${this.logTail()}`);
      let pid: number;
      try {
        pid = await this.servingPid(500);
      } catch {
        if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not start: ${this.logTail()}`);
        await sleep(30);
        continue;
      }
      // The port was only free when it was picked: any Redis that took it since would answer too.
      if (pid === child.pid) return;
      throw new PortTakenError(`port ${this.port} is served by another process (pid ${pid}), not by the redis-server started here (pid ${child.pid})`);
    }
  }

  /** The process_id of the server answering on our port (INFO server). */
  private async servingPid(timeoutMs: number): Promise<number> {
    const auth = !this.options.sentinel && this.options.password !== undefined ? [["AUTH", this.options.password]] : [];
    const replies = await redisCommands(this.port, [...auth, ["INFO", "server"]], timeoutMs);
    const info = replies.at(-1);
    const pid = info?.kind === "bulk" ? /^process_id:(\d+)\r?$/m.exec(info.text ?? "")?.[1] : undefined;
    if (pid === undefined) throw new Error(`no process_id from port ${this.port}: ${info?.raw.slice(0, 100) ?? "no reply"}`);
    return Number(pid);
  }

  /**
   * The earliest moment (performance.now() clock) at which `key` can expire: its PTTL added to when
   * the question was sent, so never later than the real expiry. Throws if the key has no expiry.
   */
  async expiryOf(key: string): Promise<number> {
    const sentAt = performance.now();
    const auth = !this.options.sentinel && this.options.password !== undefined ? [["AUTH", this.options.password]] : [];
    const reply = (await redisCommands(this.port, [...auth, ["PTTL", key]], 2000)).at(-1);
    const pttl = reply?.kind === "integer" ? Number(reply.text) : Number.NaN;
    if (!(pttl >= 0)) throw new Error(`${key} on port ${this.port} has no expiry: ${reply?.raw.trim() ?? "no reply"}`);
    return sentAt + pttl;
  }

  logTail(lines = 5): string {
    try {
      return readFileSync(join(this.dir, "redis.log"), "utf8").trim().split("\n").slice(-lines).join(" | ");
    } catch {
      return "(no log)";
    }
  }

  /** Graceful stop (SIGTERM: Redis flushes the AOF and exits). */
  async stop(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    try {
      process.kill(child.pid ?? 0, "SIGCONT");
    } catch {
      // not stopped
    }
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }

  /** Crash (SIGKILL). */
  async kill(): Promise<void> {
    const child = this.child;
    if (child === undefined) return;
    child.kill("SIGKILL");
    await this.exited;
  }

  /** Freezes the server (SIGSTOP): connections stay open, nothing is answered. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  resume(): void {
    this.child?.kill("SIGCONT");
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.launch();
  }

  async startAgain(): Promise<void> {
    if (this.child !== undefined) return;
    await this.launch();
  }

  cli(args: string[]): Promise<string> {
    return redisCli(this.port, args, this.options.password === undefined ? {} : { password: this.options.password });
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000, everyMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
    await sleep(everyMs);
  }
}

export interface SentinelSetup {
  masterName: string;
  master: RedisServer;
  replica: RedisServer;
  sentinels: RedisServer[];
  /** `redis+sentinel://127.0.0.1:p1,…/<master>` */
  url: string;
  /** Port of the current master according to the first sentinel. */
  currentMasterPort(): Promise<number>;
  /** Forces a failover and waits until the sentinels report the other node as master. */
  failover(): Promise<number>;
  stop(): Promise<void>;
}

/** 1 master, 1 replica, 3 sentinels (quorum 2), short timeouts. */
export async function startSentinelSetup(masterName = "lrmaster"): Promise<SentinelSetup> {
  const master = await RedisServer.start();
  const replica = await RedisServer.start({ replicaOf: master.port });
  const started: RedisServer[] = [master, replica];
  try {
    await waitFor("the replica to sync", async () => (await replica.cli(["INFO", "replication"])).includes("master_link_status:up"));
    const config = [
      `sentinel monitor ${masterName} 127.0.0.1 ${master.port} 2`,
      `sentinel down-after-milliseconds ${masterName} 1000`,
      `sentinel failover-timeout ${masterName} 4000`,
      `sentinel parallel-syncs ${masterName} 1`,
    ];
    const sentinels = await Promise.all([0, 1, 2].map(() => RedisServer.start({ sentinel: true, config })));
    started.push(...sentinels);
    await Promise.all(
      sentinels.map((s) =>
        waitFor("a sentinel to see the replica", async () => {
          const out = await s.cli(["SENTINEL", "replicas", masterName]);
          return out.includes(String(replica.port)) && !out.includes("s_down");
        }),
      ),
    );
    // Sentinels find each other through hello messages (every 2 s). Until they do, a crashed master
    // cannot reach the quorum for objective down nor a sentinel win the vote to fail over, and a vote
    // that fails is only retried after 2 x failover-timeout.
    await Promise.all(
      sentinels.map((s) =>
        waitFor("the sentinels to know each other", async () => {
          const fields = (await s.cli(["SENTINEL", "master", masterName])).split("\n");
          return Number(fields[fields.indexOf("num-other-sentinels") + 1]) === sentinels.length - 1;
        }),
      ),
    );
    const first = sentinels[0] as RedisServer;
    const currentMasterPort = async (): Promise<number> => {
      const out = await first.cli(["SENTINEL", "get-master-addr-by-name", masterName]);
      return Number(out.split("\n")[1]);
    };
    return {
      masterName,
      master,
      replica,
      sentinels,
      url: `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(",")}/${masterName}`,
      currentMasterPort,
      async failover(): Promise<number> {
        const before = await currentMasterPort();
        // redis-cli exits 0 on an error reply: check the reply. A refusal (NOGOODSLAVE while the
        // sentinel has not yet refreshed the replica's state) is retried until the deadline.
        await waitFor("the sentinel to start a failover", async () => {
          const reply = await first.cli(["SENTINEL", "failover", masterName]);
          if (reply !== "OK" && !reply.startsWith("INPROG")) throw new Error(reply);
          return true;
        });
        let after = before;
        await waitFor("the failover", async () => {
          after = await currentMasterPort();
          return after !== before;
        });
        return after;
      },
      async stop(): Promise<void> {
        await Promise.all(started.map((s) => s.kill()));
      },
    };
  } catch (error) {
    await Promise.all(started.map((s) => s.kill()));
    throw error;
  }
}

export interface ClusterSetup {
  nodes: RedisServer[];
  /** `redis+cluster://127.0.0.1:p1,…` */
  url: string;
  stop(): Promise<void>;
}

/** A Cluster of `masters` masters without replicas, all slots assigned, state ok. */
export async function startCluster(masters = 3): Promise<ClusterSetup> {
  const nodes = await Promise.all(Array.from({ length: masters }, () => RedisServer.start({ cluster: true })));
  try {
    const first = nodes[0] as RedisServer;
    await redisCli(first.port, [
      "--cluster",
      "create",
      ...nodes.map((n) => `127.0.0.1:${n.port}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ], { timeoutMs: 30_000 });
    await Promise.all(
      nodes.map((n) => waitFor("the cluster state to be ok", async () => (await n.cli(["CLUSTER", "INFO"])).includes("cluster_state:ok"))),
    );
    return {
      nodes,
      url: `redis+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(",")}`,
      async stop(): Promise<void> {
        await Promise.all(nodes.map((n) => n.kill()));
      },
    };
  } catch (error) {
    await Promise.all(nodes.map((n) => n.kill()));
    throw error;
  }
}
