import Parser from "yargs-parser";
import type { Options as ParserOptions } from "yargs-parser";

/**
 * yargs' own parse of an ordinary command line, without yargs. leader-run starts on every cron run,
 * and loading yargs (help text, locales, completion, its module tree) costs more than everything
 * else before the child starts; the tokenising underneath is `yargs-parser`, which is small. This
 * module drives `yargs-parser` the way yargs does for leader-run's configuration (strictOptions,
 * commands whose options are not global) and applies the one check yargs adds for it: unknown
 * options. It declines (returns `undefined`) every command line where yargs would do more than that
 * (help, version, completion, a second command word), and the caller then asks yargs itself.
 * test/cli/fast-parse.test.ts checks the equivalence on a corpus of command lines.
 */

/** yargs' raw result, as leader-run reads it. */
export type RawArgv = Record<string, unknown> & { _: string[]; "--"?: string[] };

export type FastParse =
  | { argv: RawArgv }
  /** The message yargs would fail with (before leader-run rewords it). */
  | { yargsMessage: string };

export interface FastParseSpec<C extends string> {
  /** The yargs-parser options yargs would use at the top level (command undefined) or for a command. */
  optionsFor(command: C | undefined): ParserOptions;
  /** Commands whose options yargs swaps in when they are the first word. */
  commands: readonly C[];
  /** Words that make yargs print something (help, completion script) instead of parsing. */
  declineWords: readonly string[];
  /** Option keys that make yargs print something or answer completions (help, version, …). */
  declineKeys: readonly string[];
}

/** Keys yargs never reports as unknown. */
const SPECIAL_KEYS = new Set(["$0", "--", "_"]);

/** The fast parse of `args`, or `undefined` when only yargs can tell. */
export function fastParse<C extends string>(args: readonly string[], spec: FastParseSpec<C>): FastParse | undefined {
  const outer = Parser.detailed([...args], spec.optionsFor(undefined));
  // `--_ x` replaces the positionals themselves; only the full path deals with such a line.
  if (!Array.isArray(outer.argv._) || declines(outer.argv, spec)) return undefined;
  const first = outer.argv._[0];
  const command = spec.commands.find((c) => c === String(first));
  // yargs re-parses the whole command line with the command's options and keeps the command word
  // in front of what that parse left as positionals.
  const parsed = command === undefined ? outer : Parser.detailed([...args], spec.optionsFor(command));
  if (command !== undefined && (!Array.isArray(parsed.argv._) || declines(parsed.argv, spec))) return undefined;
  const positionals = parsed.argv._.map(String);
  const argv = { ...parsed.argv, _: command === undefined ? positionals : [command, ...positionals.slice(1)] } as RawArgv;
  if (parsed.argv["--"] !== undefined) argv["--"] = parsed.argv["--"].map(String);
  // yargs' order: the parser's own error (a missing value) first, then unknown options.
  if (parsed.error) return { yargsMessage: parsed.error.message };
  const unknown = Object.keys(parsed.argv).filter((key) => !SPECIAL_KEYS.has(key) && !knownKey(key, parsed.aliases, parsed.newAliases));
  if (unknown.length > 0) {
    const names = unknown.map((s) => (s.trim() ? s : `"${s}"`)).join(", ");
    return { yargsMessage: `${unknown.length === 1 ? "Unknown argument" : "Unknown arguments"}: ${names}` };
  }
  return { argv };
}

function declines<C extends string>(argv: { _: (string | number)[] } & Record<string, unknown>, spec: FastParseSpec<C>): boolean {
  if (spec.declineKeys.some((k) => Object.hasOwn(argv, k))) return true;
  return argv._.some((w) => spec.declineWords.includes(String(w)));
}

/**
 * yargs' `isValidAndSomeAliasIsNotNew`: a key is known when the parser knows it as a declared option
 * or an alias of one, not only as the camel-case twin it invented for an unknown option.
 */
function knownKey(key: string, aliases: Record<string, string[]>, newAliases: Record<string, boolean>): boolean {
  const own = aliases[key];
  if (!Object.hasOwn(aliases, key) || own === undefined) return false;
  return [key, ...own].some((a) => !Object.hasOwn(newAliases, a) || !newAliases[key]);
}
