/**
 * Fenced code blocks of the project's Markdown, with the line each starts on and the marker comment
 * (`<!-- ... -->`) right above it, so a test can name `README.md:171` and honour an explicit opt-out.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

export interface CodeBlock {
  /** Path relative to the repository root, e.g. `docs/kubernetes.md`. */
  file: string;
  /** Info string's first word, lower-cased (`yaml`, `sh`, ...); `""` when none. */
  lang: string;
  /** 1-based line of the first line of the block's content (the line after the opening fence). */
  line: number;
  /** The content, without the fences and with the block's indentation (inside a list item) removed. */
  text: string;
  /** The text of an HTML comment on the line right above the opening fence (blank lines allowed between), if any. */
  marker?: string;
}

/** README.md, docs/**\/*.md and examples/**\/*.md: everything a user reads. */
export function documentationFiles(root = ROOT): string[] {
  const files = ["README.md"];
  for (const dir of ["docs", "examples"]) files.push(...walk(join(root, dir), root).filter((f) => f.endsWith(".md")));
  return files.sort();
}

/** Every file under `examples/`, relative to the root. */
export function exampleFiles(root = ROOT): string[] {
  return walk(join(root, "examples"), root).sort();
}

function walk(dir: string, root: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const name of names) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...walk(path, root));
    else out.push(relative(root, path));
  }
  return out;
}

const FENCE = /^( {0,3}|\s*)(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const MARKER = /^\s*<!--\s*([\s\S]*?)\s*-->\s*$/;

export function codeBlocks(file: string, source: string): CodeBlock[] {
  const lines = source.split("\n");
  const blocks: CodeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = FENCE.exec(lines[i] as string);
    if (!open) continue;
    const indent = (open[1] as string).length;
    const fence = open[2] as string;
    const lang = (open[3] as string).toLowerCase();
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j] as string;
      const trimmed = l.trimStart();
      if (trimmed.startsWith(fence[0]!.repeat(fence.length)) && trimmed.replace(/[`~]/g, "").trim() === "") break;
      body.push(l.slice(Math.min(indent, l.length - l.trimStart().length)));
    }
    let marker: string | undefined;
    for (let k = i - 1; k >= 0; k--) {
      const above = lines[k] as string;
      if (above.trim() === "") continue;
      const m = MARKER.exec(above);
      if (m) marker = m[1];
      break;
    }
    blocks.push({ file, lang, line: i + 2, text: body.join("\n"), ...(marker === undefined ? {} : { marker }) });
    i = j;
  }
  return blocks;
}

export function readCodeBlocks(file: string, root = ROOT): CodeBlock[] {
  return codeBlocks(file, readFileSync(join(root, file), "utf8"));
}
