import { accessSync, closeSync, constants, existsSync, openSync, readSync, statSync } from "node:fs";
import { delimiter, join, resolve } from "node:path";

/**
 * Whether a command can be started, looked at before anything is spawned: the CLI refuses a typo
 * before it campaigns, and the supervisor before it spawns the gate. Nothing here loads
 * node:child_process, so a run that never starts its command does not pay for it (issue #13).
 */

export type SpawnFailure = "not_found" | "not_executable" | "spawn_failed";

/**
 * The command could not be started. The CLI exits with `exitCode`, as shells do: 127 when the command
 * was not found, 126 when it exists but cannot be executed (no execute permission, a directory, a
 * missing `#!` interpreter) or could not be started at all.
 */
export class ChildSpawnError extends Error {
  readonly exitCode: 126 | 127;

  constructor(
    message: string,
    readonly reason: SpawnFailure,
    readonly errno: string | undefined,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ChildSpawnError";
    this.exitCode = reason === "not_found" ? 127 : 126;
  }
}

/** glibc's execvp default when PATH is unset (libuv uses the same). */
const DEFAULT_PATH = "/bin:/usr/bin";

/**
 * Whether `command` looks runnable (found, executable, its #! interpreter present), checked the way
 * startChild checks it, so a caller can refuse a typo before waiting for anything. Undefined when it
 * looks fine; with `shell`, /bin/sh parses the words later, so nothing is checked.
 */
export function checkCommand(command: readonly string[], shell: boolean, env: NodeJS.ProcessEnv, cwd?: string): ChildSpawnError | undefined {
  const [first] = command;
  if (shell || first === undefined) return undefined;
  return preflight(first, env.PATH, cwd);
}

/**
 * Why exec would fail for `file`, as a shell would report it, or undefined when it looks runnable.
 * A failure this cannot foresee (a binary whose dynamic loader is missing, a file removed meanwhile)
 * still ends the gate with the shell's 126 or 127 and env's message.
 */
export function preflight(file: string, path: string | undefined, cwd: string | undefined): ChildSpawnError | undefined {
  const found = locate(file, path, cwd);
  if (found === undefined) {
    const hint = file.includes("/") ? "check the path" : "check the spelling and PATH";
    return new ChildSpawnError(`command not found: ${file}: ${hint}`, "not_found", "ENOENT");
  }
  if (isDirectory(found)) return new ChildSpawnError(`permission denied: ${found} is a directory`, "not_executable", "EACCES");
  if (!isExecutable(found)) return new ChildSpawnError(`permission denied: ${found} is not executable (chmod +x?)`, "not_executable", "EACCES");
  const interpreter = shebang(found);
  if (interpreter?.startsWith("/") === true && !existsSync(interpreter)) {
    const crlf = interpreter.endsWith("\r") ? " (the script has Windows line endings: convert it with dos2unix)" : "";
    return new ChildSpawnError(`cannot execute ${found}: its #! interpreter ${JSON.stringify(interpreter)} was not found${crlf}`, "not_executable", "ENOENT");
  }
  return undefined;
}

/**
 * Where exec would find `file`: a path as given, else (like execvp) the first executable PATH entry,
 * or the first existing one when none is executable, so the error names what is in the way.
 */
function locate(file: string, path: string | undefined, cwd: string | undefined): string | undefined {
  if (file === "") return undefined;
  const base = cwd ?? process.cwd();
  // As execvp reads PATH: unset means the default path, an empty entry means the working directory.
  const dirs = (path ?? DEFAULT_PATH).split(delimiter).map((dir) => resolve(base, dir === "" ? "." : dir));
  const candidates = file.includes("/") ? [resolve(base, file)] : dirs.map((dir) => join(dir, file));
  const existing = candidates.filter((candidate) => {
    try {
      statSync(candidate);
      return true;
    } catch {
      return false;
    }
  });
  return existing.find((candidate) => !isDirectory(candidate) && isExecutable(candidate)) ?? existing[0];
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The interpreter named by a `#!` line, if the file starts with one. */
function shebang(path: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const head = Buffer.alloc(256);
    const line = head.subarray(0, readSync(fd, head, 0, head.length, 0)).toString("latin1");
    if (!line.startsWith("#!")) return undefined;
    // Only spaces and tabs separate: the kernel keeps a CRLF line's "\r" as part of the interpreter name.
    return line.slice(2).split("\n", 1)[0]?.replace(/^[ \t]+/, "").split(/[ \t]/, 1)[0] || undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
