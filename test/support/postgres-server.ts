/**
 * A real PostgreSQL server for tests: `initdb` into a temp dir, `postgres` on 127.0.0.1 with a random
 * free port and its Unix socket inside the temp dir, fsync off. Run as the `postgres` user when the
 * tests run as root (PostgreSQL refuses root). Every server started here is killed when the test process
 * exits, even if a test forgets (or fails before) `stop()`.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import pg from "pg";
import { freePort } from "./redis-server.js";

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.once("exit", () => {
  for (const child of live) {
    if (child.pid === undefined) continue;
    const backends = spawnSync("ps", ["-o", "pid=", "--ppid", String(child.pid)], { encoding: "utf8" }).stdout.split(/\s+/).filter((p) => /^\d+$/.test(p));
    for (const pid of [child.pid, ...backends.map(Number)]) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function findBin(): string | undefined {
  const fromEnv = process.env.PG_BIN;
  if (fromEnv && existsSync(join(fromEnv, "postgres"))) return fromEnv;
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, "bin", "postgres")))
      .sort((a, b) => Number(b) - Number(a));
    if (versions[0] !== undefined) return join(base, versions[0], "bin");
  }
  const r = spawnSync("sh", ["-c", "command -v postgres"], { encoding: "utf8" });
  const path = r.stdout.trim();
  return r.status === 0 && path !== "" ? join(path, "..") : undefined;
}

export const PG_BIN = findBin();
const OPENSSL = spawnSync("sh", ["-c", "command -v openssl"], { encoding: "utf8" }).stdout.trim() || undefined;

/** The uid/gid to run the server as when we are root; undefined when not root. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  return { uid, gid };
}

function rootCanRun(): boolean {
  if (process.getuid?.() !== 0) return true;
  return spawnSync("id", ["-u", "postgres"]).status === 0 && spawnSync("sh", ["-c", "command -v setpriv"]).status === 0;
}

/**
 * True when the tests can run. Otherwise skips the test (or, on CI, fails it: a missing binary there
 * must not turn into a green run).
 */
export function requirePostgres(t: TestContext, opts: { tls?: boolean } = {}): boolean {
  let missing: string | undefined;
  if (PG_BIN === undefined) missing = "PostgreSQL server binaries not found: apt-get install postgresql (or set PG_BIN)";
  else if (!rootCanRun()) missing = "running as root needs a 'postgres' user and setpriv to start PostgreSQL";
  else if (opts.tls && OPENSSL === undefined) missing = "openssl not installed: apt-get install openssl";
  if (missing === undefined) return true;
  if (process.env.CI === "true") throw new Error(missing);
  t.skip(missing);
  return false;
}

export interface PgServer {
  port: number;
  dir: string;
  /** Superuser `postgres` with a password, database `postgres`. */
  url: string;
  /** Login role `leader_run_job` (no CREATE on schema public), database `postgres`. */
  jobUrl: string;
  superPassword: string;
  jobPassword: string;
  /** With `tls`: the CA that signed the server's certificate (CN and SAN localhost, 127.0.0.1). */
  caFile?: string;
  /** With `tls`: a CA that did not. */
  otherCaFile?: string;
  pid: number;
  /** Runs SQL as the superuser; rows of the last statement. */
  psql(sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  /** SIGSTOP / SIGCONT to every server process (postmaster and backends). */
  pause(): void;
  resume(): void;
  /** Fast shutdown and start again on the same port and data dir. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function asServer(args: string[], user: { uid: number; gid: number } | undefined): [string, string[]] {
  const [cmd, ...rest] = args as [string, ...string[]];
  if (user === undefined) return [cmd, rest];
  return ["setpriv", [`--reuid=${user.uid}`, `--regid=${user.gid}`, "--init-groups", "--inh-caps=-all", cmd, ...rest]];
}

function makeCerts(dir: string): { ca: string; otherCa: string; cert: string; key: string } {
  const ssl = (args: string[]): void => {
    execFileSync(OPENSSL ?? "openssl", args, { cwd: dir, stdio: "ignore" });
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=leader-run test CA"]);
  ssl(["req", "-x509", ...ec, "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=leader-run other CA"]);
  ssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
  writeFileSync(join(dir, "san.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  ssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext"]);
  return { ca: join(dir, "ca.pem"), otherCa: join(dir, "other-ca.pem"), cert: join(dir, "server.pem"), key: join(dir, "server.key") };
}

/** `settings`: more `-c name=value` server settings, after the defaults (so they win). */
export async function startPostgres(opts: { tls?: boolean; settings?: string[] } = {}): Promise<PgServer> {
  if (PG_BIN === undefined) throw new Error("PostgreSQL binaries not found");
  const bin = PG_BIN;
  const user = serverUser();
  const dir = join(tmpdir(), `leader-run-pg-${randomBytes(6).toString("hex")}`);
  mkdirSync(dir, { mode: 0o700 });
  tempDirs.add(dir);
  const data = join(dir, "data");
  const superPassword = randomBytes(9).toString("hex");
  const jobPassword = randomBytes(9).toString("hex");
  writeFileSync(join(dir, "pw"), `${superPassword}\n`);
  let certs: ReturnType<typeof makeCerts> | undefined;
  if (opts.tls) certs = makeCerts(dir);
  if (user !== undefined) {
    const chown = (path: string): void => chownSync(path, user.uid, user.gid);
    chown(dir);
    chown(join(dir, "pw"));
    if (certs) for (const f of [certs.cert, certs.key, certs.ca]) chown(f);
  }
  if (certs) chmodSync(certs.key, 0o600);
  const [initCmd, initArgs] = asServer(
    [join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${join(dir, "pw")}`, "-E", "UTF8", "--no-sync", "--no-instructions"],
    user,
  );
  const init = spawnSync(initCmd, initArgs, { encoding: "utf8" });
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stderr || init.stdout}`);

  const port = await freePort();
  const settings = [
    `port=${port}`,
    "listen_addresses=127.0.0.1",
    `unix_socket_directories=${dir}`,
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=60",
    "shared_buffers=16MB",
    "log_min_messages=fatal",
    "logging_collector=off",
  ];
  if (certs) settings.push("ssl=on", `ssl_cert_file=${certs.cert}`, `ssl_key_file=${certs.key}`, `ssl_ca_file=${certs.ca}`);
  settings.push(...(opts.settings ?? []));

  let child: ChildProcess | undefined;
  let stderr = "";
  const url = `postgres://postgres:${superPassword}@127.0.0.1:${port}/postgres`;
  const jobUrl = `postgres://leader_run_job:${jobPassword}@127.0.0.1:${port}/postgres`;

  const superClient = (): pg.Client => new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  const psql = async (sql: string, values?: unknown[]): Promise<Record<string, unknown>[]> => {
    const client = superClient();
    client.on("error", () => undefined);
    await client.connect();
    try {
      const result = await client.query(sql, values);
      const last = Array.isArray(result) ? (result[result.length - 1] as pg.QueryResult) : result;
      return last.rows as Record<string, unknown>[];
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  const launch = async (): Promise<void> => {
    const [cmd, args] = asServer([join(bin, "postgres"), "-D", data, ...settings.flatMap((s) => ["-c", s])], user);
    stderr = "";
    // Its own process group, so pause() stops the postmaster and every backend at once.
    const proc = spawn(cmd, args, { detached: true, stdio: ["ignore", "ignore", "pipe"] });
    child = proc;
    live.add(proc);
    proc.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    proc.once("exit", () => live.delete(proc));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`postgres exited at start: ${stderr}`);
      try {
        await psql("SELECT 1");
        return;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`postgres did not accept connections within 30s: ${String(error)} ${stderr}`);
        await sleep(100);
      }
    }
  };

  const waitExit = async (proc: ChildProcess, ms: number): Promise<boolean> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return true;
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      proc.once("exit", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  };


  /** The postmaster's children: every backend puts itself in its own process group (setsid). */
  const children = (): number[] => {
    if (child?.pid === undefined) return [];
    const r = spawnSync("ps", ["-o", "pid=", "--ppid", String(child.pid)], { encoding: "utf8" });
    return r.stdout
      .split(/\s+/)
      .filter((p) => /^\d+$/.test(p))
      .map(Number);
  };
  const signalAll = (signal: NodeJS.Signals): void => {
    // Stopping: the postmaster first, so it forks no new backend; resuming: the postmaster last.
    const pids = child?.pid === undefined ? [] : signal === "SIGCONT" ? [...children(), child.pid] : [child.pid, ...children()];
    for (const pid of pids) {
      try {
        process.kill(pid, signal);
      } catch {
        // gone
      }
    }
  };

  const shutdown = async (): Promise<void> => {
    const proc = child;
    if (proc === undefined) return;
    signalAll("SIGCONT");
    try {
      proc.kill("SIGINT"); // fast shutdown: roll back, disconnect clients, checkpoint
    } catch {
      // gone
    }
    if (!(await waitExit(proc, 10_000))) {
      signalAll("SIGKILL");
      await waitExit(proc, 5000);
    }
    child = undefined;
  };

  await launch();
  await psql(`CREATE ROLE leader_run_job LOGIN PASSWORD '${jobPassword}'`);

  const server: PgServer = {
    port,
    dir,
    url,
    jobUrl,
    superPassword,
    jobPassword,
    get pid() {
      return child?.pid ?? -1;
    },
    psql,
    pause: () => signalAll("SIGSTOP"),
    resume: () => signalAll("SIGCONT"),
    restart: async () => {
      await shutdown();
      await launch();
    },
    stop: async () => {
      await shutdown();
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };
  if (certs) {
    server.caFile = certs.ca;
    server.otherCaFile = certs.otherCa;
  }
  return server;
}
