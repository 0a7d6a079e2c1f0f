/**
 * leader-run command lines written in configuration rather than a shell: a container's
 * `command` + `args`, a Dockerfile's exec-form ENTRYPOINT + CMD, a systemd `ExecStart=`. Each is turned
 * into the argv leader-run would receive, so the real option parser can check it.
 */
import { basename } from "node:path";

export interface Invocation {
  /** `file:line` and what it is, for messages. */
  where: string;
  /** Arguments after `leader-run`. */
  argv: string[];
  /** The environment the process would see (a container's `env`, with downward-API values stubbed). */
  env: Record<string, string>;
}

/** Drops an init in front (`tini --`, `dumb-init`) and returns the arguments after leader-run, if it is leader-run. */
export function leaderRunArgs(words: readonly string[]): string[] | undefined {
  let rest = [...words];
  while (rest.length > 0 && ["tini", "dumb-init", "--"].includes(basename(rest[0] as string))) rest = rest.slice(1);
  if (rest.length === 0 || basename(rest[0] as string) !== "leader-run") return undefined;
  return rest.slice(1);
}

interface ContainerLike {
  command?: unknown;
  args?: unknown;
  env?: unknown;
}

/** Kubernetes' `$(VAR)` expansion of command and args: defined variables are replaced, `$$` escapes `$`. */
export function expandKubernetesVars(word: string, env: Record<string, string>): string {
  return word.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name: string | undefined) => {
    if (name === undefined) return "$";
    return Object.prototype.hasOwnProperty.call(env, name) ? (env[name] as string) : all;
  });
}

/** Stub values for downward-API fields, valid where leader-run checks them (namespace, pod name). */
const FIELD_STUBS: Record<string, string> = {
  "metadata.name": "report-worker-7d9f8b6c4-x2k8p",
  "metadata.namespace": "jobs",
};

function containerEnv(env: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(env)) return out;
  for (const e of env as Array<{ name?: unknown; value?: unknown; valueFrom?: { fieldRef?: { fieldPath?: unknown } } }>) {
    if (typeof e?.name !== "string") continue;
    if (typeof e.value === "string") out[e.name] = expandKubernetesVars(e.value, out);
    else {
      const field = e.valueFrom?.fieldRef?.fieldPath;
      out[e.name] = typeof field === "string" && FIELD_STUBS[field] !== undefined ? FIELD_STUBS[field] : `stub-${e.name.toLowerCase()}`;
    }
  }
  return out;
}

/** Every object in `value` shaped like a container (string-list `command` and/or `args`) that runs leader-run. */
export function containerInvocations(value: unknown, where: string): Invocation[] {
  const found: Invocation[] = [];
  const visit = (node: unknown, path: string): void => {
    if (Array.isArray(node)) {
      node.forEach((n, i) => visit(n, `${path}[${i}]`));
      return;
    }
    if (node === null || typeof node !== "object") return;
    const c = node as ContainerLike;
    const words = (x: unknown): string[] | undefined =>
      Array.isArray(x) && x.every((w) => typeof w === "string") ? (x as string[]) : undefined;
    const command = words(c.command);
    const args = words(c.args);
    if (command || args) {
      const env = containerEnv(c.env);
      const argv = leaderRunArgs([...(command ?? []), ...(args ?? [])].map((w) => expandKubernetesVars(w, env)));
      if (argv) found.push({ where: `${where} ${path || "(top level)"}`, argv, env });
    }
    for (const [k, v] of Object.entries(node)) visit(v, path === "" ? k : `${path}.${k}`);
  };
  visit(value, "");
  return found;
}

/** Exec-form (`["a", "b"]`) ENTRYPOINT followed by CMD, as Docker joins them. */
export function dockerfileInvocations(text: string, where: string): Invocation[] {
  const instruction = (name: string): string[] | undefined => {
    const m = new RegExp(`^\\s*${name}\\s+(\\[.*\\])\\s*$`, "im").exec(text);
    if (!m) return undefined;
    return JSON.parse(m[1] as string) as string[];
  };
  const argv = leaderRunArgs([...(instruction("ENTRYPOINT") ?? []), ...(instruction("CMD") ?? [])]);
  return argv ? [{ where: `${where} ENTRYPOINT + CMD`, argv, env: {} }] : [];
}

/** `ExecStart=` lines of a unit file (plain words; systemd's quoting is not used in the docs). */
export function systemdInvocations(text: string, where: string): Invocation[] {
  const found: Invocation[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*ExecStart=[-@:+!]*(.+)$/.exec(line);
    if (!m) continue;
    const argv = leaderRunArgs((m[1] as string).trim().split(/\s+/));
    if (argv) found.push({ where: `${where} ExecStart`, argv, env: {} });
  }
  return found;
}
