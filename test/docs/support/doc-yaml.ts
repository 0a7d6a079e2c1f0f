/**
 * Which YAML the project shows and what each piece must be. Convention for Markdown (README.md,
 * docs/, examples/**\/*.md), stated by a comment right above a ```yaml block:
 *
 * - no comment: every document in the block is a whole Kubernetes object (apiVersion + kind);
 * - `<!-- k8s: io.k8s.api.core.v1.Container -->`: a piece of one, validated against that OpenAPI
 *   definition; `, partial` lets fields the definition requires at the top be left out;
 * - `<!-- not kubernetes: <what it is> -->`: other YAML (e.g. Prometheus rules): only parsed, and
 *   Kubernetes objects in it still validated.
 *
 * A block that is none of these fails, so new YAML in the docs is never silently left unchecked.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { checkYaml, type YamlCheck, type YamlSource } from "./k8s-schema.js";
import { documentationFiles, exampleFiles, readCodeBlocks, ROOT, type CodeBlock } from "./markdown.js";

export const YAML_LANGS = new Set(["yaml", "yml"]);

const FRAGMENT = /^k8s:\s*(io\.k8s\.[\w.-]+)\s*(,\s*partial)?\s*$/;
const NOT_KUBERNETES = /^not kubernetes:\s*\S/;

/** How a Markdown YAML block is checked, from its marker; a marker that is malformed is reported. */
export function yamlSourceOfBlock(block: CodeBlock): YamlSource | string {
  const base = { file: block.file, text: block.text, lineOffset: block.line - 1 };
  const marker = block.marker;
  if (marker === undefined || (!marker.startsWith("k8s:") && !marker.startsWith("not kubernetes"))) {
    return { ...base, expect: { kind: "object" } };
  }
  const fragment = FRAGMENT.exec(marker);
  if (fragment) return { ...base, expect: { kind: "fragment", definition: fragment[1] as string, partial: fragment[2] !== undefined } };
  if (NOT_KUBERNETES.test(marker)) return { ...base, expect: { kind: "any" } };
  return `${block.file}:${block.line - 1}: malformed marker <!-- ${marker} -->: use <!-- k8s: io.k8s.api.core.v1.Container[, partial] --> or <!-- not kubernetes: what it is -->`;
}

const HINT =
  " (a piece of an object needs <!-- k8s: <OpenAPI definition, e.g. io.k8s.api.core.v1.Container>[, partial] --> above the block; YAML that is not Kubernetes needs <!-- not kubernetes: what it is -->)";

export interface CheckedSource {
  source: YamlSource;
  check: YamlCheck;
  /** For Markdown blocks: the block. */
  block?: CodeBlock;
}

/** Every YAML file under examples/ and every YAML block of the documentation, checked. */
export async function checkAllYaml(root = ROOT): Promise<{ checked: CheckedSource[]; problems: string[] }> {
  const checked: CheckedSource[] = [];
  const problems: string[] = [];
  for (const file of exampleFiles(root).filter((f) => /\.ya?ml$/.test(f))) {
    const source: YamlSource = { file, text: readFileSync(join(root, file), "utf8"), expect: { kind: "object" } };
    const check = await checkYaml(source);
    checked.push({ source, check });
    problems.push(...check.problems);
  }
  for (const file of documentationFiles(root)) {
    for (const block of readCodeBlocks(file, root).filter((b) => YAML_LANGS.has(b.lang))) {
      const source = yamlSourceOfBlock(block);
      if (typeof source === "string") {
        problems.push(source);
        continue;
      }
      const check = await checkYaml(source);
      checked.push({ source, check, block });
      problems.push(...check.problems.map((p) => (p.includes("not a Kubernetes object") ? p + HINT : p)));
    }
  }
  return { checked, problems };
}
