import { UsageError } from "./errors.js";
import { OPTIONS } from "./options.js";

/**
 * Shell completion. The scripts are thin: each asks `leader-run __complete -- <words> <current>` for
 * candidates, so bash, zsh and fish offer exactly the same thing and the rules live (and are tested)
 * here: options of the command being typed, the values of an option that has a fixed set, nothing of
 * ours after `--` (the command's words are the shell's own file completion), and file names when we
 * have nothing to say (a `--lock file:` path, `--kubeconfig`).
 */

export const COMPLETION_SHELLS = ["bash", "zsh", "fish"] as const;
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

/** The hidden subcommand the scripts call. */
export const COMPLETE_COMMAND = "__complete";

const SUBCOMMANDS = ["run", "status", "release", "step-down", "completion", "help"] as const;
const GLOBAL = ["--help", "--version"];

/** The shell named by $SHELL, bash when unknown. */
export function shellFromEnv(env: NodeJS.ProcessEnv): string {
  const base = (env.SHELL ?? "").split("/").pop() ?? "";
  return (COMPLETION_SHELLS as readonly string[]).includes(base) ? base : "bash";
}

/** The completion script of `shell`. @throws UsageError for a shell we have no script for. */
export function completionScript(shell: string): string {
  switch (shell) {
    case "bash":
      return BASH;
    case "zsh":
      return ZSH;
    case "fish":
      return FISH;
    default:
      throw new UsageError(`no completion for the shell "${shell}"; use one of ${COMPLETION_SHELLS.join(", ")}`);
  }
}

function takesValue(word: string): boolean {
  const spec = OPTIONS[longName(word) ?? ""];
  return spec?.type === "string";
}

/** `--lock` → lock, `-q` → quiet; undefined when not one of ours. */
function longName(word: string): string | undefined {
  if (word.startsWith("--")) return word.slice(2);
  if (/^-[a-zA-Z]$/.test(word)) return Object.keys(OPTIONS).find((k) => OPTIONS[k]?.short === word[1]);
  return undefined;
}

/**
 * Candidates for `current`, the word being completed, after `before` (the words typed so far without
 * the program name). An empty list lets the shell fall back to file names.
 */
export function completions(before: readonly string[], current: string): string[] {
  let command: string | undefined;
  for (let i = 0; i < before.length; i++) {
    const word = before[i] ?? "";
    if (word === "--") return [];
    if (word.startsWith("-")) {
      if (!word.includes("=") && takesValue(word)) i++; // its value
      continue;
    }
    command ??= word;
  }
  const prev = before[before.length - 1];
  if (prev !== undefined && prev.startsWith("-") && !prev.includes("=") && takesValue(prev)) {
    const choices = OPTIONS[longName(prev) ?? ""]?.choices ?? [];
    return choices.filter((c) => c.startsWith(current));
  }
  if (command === "completion") return current.startsWith("-") ? [] : COMPLETION_SHELLS.filter((s) => s.startsWith(current));
  if (command === "help") return before.length > 1 ? [] : SUBCOMMANDS.filter((s) => s !== "help" && s.startsWith(current));
  const scope = command === "status" || command === "release" || command === "step-down" ? command : "run";
  if (current.startsWith("-")) {
    const flags = Object.keys(OPTIONS)
      .filter((k) => OPTIONS[k]?.commands.includes(scope))
      .map((k) => `--${k}`);
    const all = command === undefined ? [...flags, ...GLOBAL, "--"] : [...flags, "--help", "--"];
    return all.filter((f) => f.startsWith(current));
  }
  if (command === undefined) return SUBCOMMANDS.filter((s) => s.startsWith(current));
  return [];
}

const BASH = `# leader-run completion for bash: add to ~/.bashrc, or save as /etc/bash_completion.d/leader-run
_leader_run_complete() {
  local IFS=$'\\n'
  COMPREPLY=($(leader-run ${COMPLETE_COMMAND} -- "\${COMP_WORDS[@]:1:COMP_CWORD-1}" "\${COMP_WORDS[COMP_CWORD]}" 2>/dev/null))
}
complete -o default -F _leader_run_complete leader-run
`;

const ZSH = `#compdef leader-run
# leader-run completion for zsh: save as _leader-run in a directory of $fpath (or source it after compinit)
_leader_run() {
  local -a candidates
  candidates=("\${(@f)$(leader-run ${COMPLETE_COMMAND} -- "\${(@)words[2,CURRENT-1]}" "\${words[CURRENT]}" 2>/dev/null)}")
  if [[ \${#candidates} -eq 0 || -z \${candidates[1]} ]]; then
    _files
  else
    compadd -- "\${candidates[@]}"
  fi
}
if [[ \${zsh_eval_context[-1]} == loadautofunc ]]; then
  _leader_run "$@"
else
  compdef _leader_run leader-run
fi
`;

const FISH = `# leader-run completion for fish: save as ~/.config/fish/completions/leader-run.fish
function __leader_run_candidates
    set -l words (commandline -opc)
    leader-run ${COMPLETE_COMMAND} -- $words[2..-1] (commandline -ct) 2>/dev/null
end
function __leader_run_wants_files
    test (count (__leader_run_candidates)) -eq 0
end
complete -c leader-run -f -a '(__leader_run_candidates)'
complete -c leader-run -F -n __leader_run_wants_files
`;
