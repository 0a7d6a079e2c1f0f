/**
 * Shell commands of the documentation, and a sandbox that runs them exactly as written.
 *
 * Which commands: every command in a ```sh, ```bash, ```shell or ```zsh block (each non-comment
 * line, `\` continuations joined), and the `$ ` lines of a ```console block, in README.md, docs/ and
 * examples/**\/*.md. A block that cannot run on one machine says so right above it, visibly:
 * `<!-- not run: needs a Kubernetes cluster and kubectl -->`; the test reports it as skipped with
 * that reason. Nothing else is left out.
 *
 * How they run: `/bin/sh -c '<the line>'`, in a fresh working directory holding the stub scripts of
 * fixtures/workdir (the `./backup.sh` and `node worker.js` the examples name) and a `bin` link to this
 * checkout's bin/, with a PATH whose `leader-run` is this checkout's bin/leader-run.js. What the sandbox
 * changes, and nothing more, is where the lease lives (see `substitute`) and the `npm` the quick
 * start calls (see fixtures/bin/npm.mjs: it checks the install the line would do instead of going online).
 */
import { spawn } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, type CodeBlock } from "./markdown.js";

export const SHELL_LANGS = new Set(["sh", "bash", "shell", "zsh", "console"]);

export interface DocCommand {
  file: string;
  /** 1-based line in `file` of the command's first line. */
  line: number;
  /** As written (with its continuation lines; a console prompt removed). */
  text: string;
}

/** The commands of one shell block. */
export function commandsOf(block: CodeBlock): DocCommand[] {
  const out: DocCommand[] = [];
  const lines = block.text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let l = lines[i] as string;
    const line = block.line + i;
    if (block.lang === "console") {
      if (!/^\s*\$ /.test(l)) continue; // output
      l = l.replace(/^\s*\$ /, "");
    }
    if (l.trim() === "" || l.trim().startsWith("#")) continue;
    let text = l;
    while (/\\\s*$/.test(text) && i + 1 < lines.length) {
      i++;
      // Kept as written: /bin/sh joins the lines itself.
      text = `${text}\n${(lines[i] as string).replace(/^\s*\$ /, "")}`;
    }
    out.push({ file: block.file, line, text: text.trim() });
  }
  return out;
}

/** `<!-- not run: reason -->` → the reason; undefined when the block runs. */
export function notRunReason(block: CodeBlock): string | undefined {
  const m = /^not run:\s*(\S.*)$/s.exec(block.marker ?? "");
  return m ? (m[1] as string).trim() : undefined;
}

export interface Backends {
  /** A Redis server to stand for the docs' Redis hosts; its password is `password`. */
  redis?: { port: number; password: string };
  /** A kubeconfig for the test Lease API server, standing for the cluster of `k8s:`/`kubernetes:` locks. */
  kubeconfig?: string;
  /** etcd standing for every host of the docs' `etcd://` URLs and `etcdctl`; `user` logs in with `password`. */
  etcd?: { endpoints: string[]; user: string; password: string };
  /** PostgreSQL standing for the docs' database host; `password` is the password of the docs' role. */
  postgres?: { port: number; password: string };
}

export type Need = "redis" | "kubernetes" | "etcd" | "postgres";

export interface Substituted {
  /** The command to run. */
  text: string;
  env: Record<string, string>;
  /** Human-readable list of what was changed, for messages. */
  changes: string[];
  /** The servers the command needs (whether or not `backends` has them). */
  needs: Need[];
}

const DOC_REDIS_HOST = /(redis(?:\+[a-z]+)?s?:\/\/(?:[^@\s'"/?]*@)?)([A-Za-z0-9.-]+(?::\d+)?)/g;
const DOC_SECRET_FILE = /password_file=([^&\s'"]+)/g;
const FILE_LOCK = /\bfile:(\/[^\s'"]*)/g;
const ETCD_URL = /(etcds?:\/\/(?:[^@\s'"/?]*@)?)([A-Za-z0-9.:,-]+)/g;
const ETCD_PASSWORD_ENV = /\bLEADER_RUN_ETCD_PASSWORD=(?:'[^']*'|"[^"]*"|[^\s'"]+)/g;
const ETCDCTL = /(^|[\s;&|(])etcdctl\s/;
const ETCDCTL_ENDPOINTS = /(--endpoints[=\s])([^\s'"]+)/g;
const POSTGRES_URL = /(postgres(?:ql)?:\/\/(?:[^@\s'"/?]*@)?)([A-Za-z0-9.-]+(?::\d+)?)/g;
const PSQL = /(^|[\s;&|(])psql\s/;
const PSQL_HOST = /(\bpsql\b[^;&|]*?\s)(?:-h\s*|--host[=\s])([^\s'"]+)/g;

/**
 * Only the lease's location changes: a `file:/path` lock moves under the sandbox; a Redis URL's host
 * becomes the test server (a `password_file=` path, a file with its password); a Kubernetes lock gets
 * the test API server through KUBECONFIG; the hosts of an `etcd://` URL (and `etcdctl`'s endpoints)
 * become the test etcd, whose user logs in with the `LEADER_RUN_ETCD_PASSWORD=` the docs leave as a
 * placeholder; a `postgres://` URL's host and `psql -h host` become the test PostgreSQL, with the
 * role's password in PGPASSWORD (where the docs say it comes from); a command that names no lock gets
 * LEADER_RUN_LOCK=file:<sandbox>.
 */
export function substitute(text: string, sandbox: string, backends: Backends): Substituted {
  const changes: string[] = [];
  const env: Record<string, string> = {};
  const needs: Substituted["needs"] = [];
  let out = text;
  const namesLock = /(^|\s)(--lock[=\s]|LEADER_RUN_LOCK=)/.test(text);

  out = out.replace(FILE_LOCK, (_all, path: string) => {
    const moved = join(sandbox, "file-locks", path);
    changes.push(`file:${path} → file:${moved}`);
    return `file:${moved}`;
  });
  if (/redis(\+[a-z]+)?s?:\/\//.test(out)) {
    needs.push("redis");
    if (backends.redis) {
      const { port, password } = backends.redis;
      out = out.replace(DOC_REDIS_HOST, (_all, prefix: string, host: string) => {
        changes.push(`${host} → 127.0.0.1:${port}`);
        return `${prefix}127.0.0.1:${port}`;
      });
      out = out.replace(DOC_SECRET_FILE, (_all, path: string) => {
        const file = join(sandbox, "secrets", path.replace(/\//g, "_"));
        mkdirSync(join(sandbox, "secrets"), { recursive: true });
        writeSecret(file, password);
        changes.push(`password_file=${path} → a file holding the test server's password`);
        return `password_file=${file}`;
      });
    }
  }
  if (/(^|[\s'"=])(k8s|kubernetes):(\s|$|['"])/.test(out)) {
    needs.push("kubernetes");
    if (backends.kubeconfig) {
      env.KUBECONFIG = backends.kubeconfig;
      changes.push("KUBECONFIG=the test Lease API server");
    }
  }
  if (/etcds?:\/\//.test(out) || ETCDCTL.test(out)) {
    needs.push("etcd");
    if (backends.etcd) {
      const { endpoints, user, password } = backends.etcd;
      // Each host of a several-endpoint URL becomes a local member, in turn (all the same one when there is one).
      const local = (hosts: string): string => hosts.split(",").map((_h, i) => endpoints[i % endpoints.length] as string).join(",");
      out = out.replace(ETCD_URL, (_all, prefix: string, hosts: string) => {
        changes.push(`${hosts} → ${local(hosts)}`);
        return `${prefix}${local(hosts)}`;
      });
      out = out.replace(ETCD_PASSWORD_ENV, () => {
        changes.push(`LEADER_RUN_ETCD_PASSWORD=the test user's password`);
        return `LEADER_RUN_ETCD_PASSWORD=${password}`;
      });
      if (ETCDCTL.test(out)) {
        out = out.replace(ETCDCTL_ENDPOINTS, (_all, flag: string, hosts: string) => {
          changes.push(`etcdctl ${hosts} → ${local(hosts)}`);
          return `${flag}${local(hosts)}`;
        });
        env.ETCDCTL_API = "3";
        env.ETCDCTL_ENDPOINTS = endpoints.map((e) => `http://${e}`).join(",");
        env.ETCDCTL_USER = `${user}:${password}`;
        changes.push("ETCDCTL_ENDPOINTS and ETCDCTL_USER=the test etcd");
      }
    }
  }
  if (/postgres(?:ql)?:\/\//.test(out) || PSQL.test(out)) {
    needs.push("postgres");
    if (backends.postgres) {
      const { port, password } = backends.postgres;
      out = out.replace(POSTGRES_URL, (_all, prefix: string, host: string) => {
        changes.push(`${host} → 127.0.0.1:${port}`);
        return `${prefix}127.0.0.1:${port}`;
      });
      out = out.replace(PSQL_HOST, (_all, before: string, host: string) => {
        changes.push(`psql -h ${host} → -h 127.0.0.1 -p ${port}`);
        return `${before}-h 127.0.0.1 -p ${port}`;
      });
      // What the docs' ~/.pgpass or PGPASSWORD holds on the user's machine.
      env.PGPASSWORD = password;
      changes.push("PGPASSWORD=the test role's password");
    }
  }
  if (!namesLock) {
    env.LEADER_RUN_LOCK = `file:${join(sandbox, "locks")}`;
    changes.push(`LEADER_RUN_LOCK=${env.LEADER_RUN_LOCK}`);
  }
  return { text: out, env, changes, needs };
}

function writeSecret(path: string, secret: string): void {
  // Like a mounted secret: readable by the owner only, with a trailing newline.
  writeFileSync(path, `${secret}\n`, { mode: 0o600 });
}

const FIXTURES = join(ROOT, "test", "docs", "fixtures");

/** A fresh working directory with the stubs, and the PATH directory with `leader-run` and `npm`. */
export function makeSandbox(): { dir: string; cwd: string; path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "leader-run-docs-"));
  const cwd = join(dir, "work");
  const bin = join(dir, "path");
  mkdirSync(cwd);
  mkdirSync(bin);
  for (const name of readdirSync(join(FIXTURES, "workdir"))) {
    copyFileSync(join(FIXTURES, "workdir", name), join(cwd, name));
    chmodSync(join(cwd, name), 0o755);
  }
  symlinkSync(join(ROOT, "bin"), join(cwd, "bin"));
  symlinkSync(join(ROOT, "bin", "leader-run.js"), join(bin, "leader-run"));
  writeFileSync(join(bin, "npm"), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(FIXTURES, "bin", "npm.mjs"))} "$@"\n`, { mode: 0o755 });
  const path = `${bin}:${process.env.PATH ?? "/usr/bin:/bin"}`;
  return { dir, cwd, path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * `/bin/sh -c text` in its own process group; after `timeoutMs` the whole group is killed, so an
 * example that never ends fails the test instead of hanging it and leaves nothing behind.
 */
export function runShell(text: string, options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", text], { cwd: options.cwd, env: options.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const killGroup = (): void => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      killGroup(); // anything the command left in its group
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}
