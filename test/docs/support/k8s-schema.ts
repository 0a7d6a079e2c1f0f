/**
 * Validates YAML that shows Kubernetes objects against Kubernetes' own OpenAPI schema, strictly:
 * wrong types, missing required fields, bad enum values and unknown fields all fail, and each problem
 * names the file, the line and the field path (`spec.template.spec.containers[0].args[0]`).
 *
 * The validators are the ones `kubernetes-models` 4.x generates from the Kubernetes OpenAPI document
 * (4.5.1: Kubernetes 1.27.1; 5.x needs Node 22). They check types, `required` and enums but ignore
 * fields the schema does not declare, as the API server's non-strict decoding does; a typo such as
 * `livenessprobe` would pass. So every object handed to a validator is wrapped in a Proxy that records
 * which properties the validator looks up: a generated validator reads every property its schema
 * declares (and enumerates the keys of maps), so a key of the document it never read is one the schema
 * does not have. That keeps the list of known fields the schema's own, with no second copy to drift.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { isPair, isScalar, LineCounter, parseAllDocuments, visit, type Document } from "yaml";

/** One object (or fragment) found in a YAML source and whether it is valid. */
export interface CheckedObject {
  file: string;
  /** 1-based line in `file` where the document starts. */
  line: number;
  /** `apps/v1 Deployment report-worker`, or the schema definition for a fragment. */
  label: string;
  /** The kubernetes-models schema module it was validated against, e.g. `IoK8sApiAppsV1Deployment`. */
  definition: string;
  value: unknown;
}

export interface YamlCheck {
  objects: CheckedObject[];
  /** Documents that are not Kubernetes objects (no apiVersion + kind) in a source where that is allowed. */
  others: Array<{ file: string; line: number; value: unknown }>;
  /** One line each: `file:line: what: field: problem`. Empty when everything is valid. */
  problems: string[];
}

export interface YamlSource {
  /** Named in every problem. */
  file: string;
  text: string;
  /** Lines before `text` in `file` (a Markdown block's position), so problems carry the file's line. */
  lineOffset?: number;
  /**
   * What the documents are: `object` (default) — each must be a whole Kubernetes object with
   * apiVersion and kind; `fragment` — a piece validated against `definition` (with `partial`, fields the
   * schema requires at the top may be missing); `any` — Kubernetes objects are validated, other YAML is
   * only parsed.
   */
  expect?: { kind: "object" } | { kind: "any" } | { kind: "fragment"; definition: string; partial: boolean };
}

type AjvError = { instancePath: string; keyword: string; params: Record<string, unknown> };
type ValidateFn = ((data: unknown) => boolean) & { errors?: AjvError[] | null };

const require = createRequire(import.meta.url);
const MODELS_DIR = dirname(require.resolve("kubernetes-models"));
const validators = new Map<string, ValidateFn>();

/** `io.k8s.api.core.v1.Container` → kubernetes-models' `_schemas/IoK8sApiCoreV1Container.mjs`. */
function schemaModuleName(definition: string): string {
  return definition
    .split(/[.-]/)
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join("");
}

/** `module`: the name of a kubernetes-models `_schemas` module, e.g. `IoK8sApiCoreV1Container`. */
async function validatorFor(module: string): Promise<ValidateFn | undefined> {
  const cached = validators.get(module);
  if (cached) return cached;
  if (!/^\w+$/.test(module)) return undefined;
  let mod: { validate?: ValidateFn };
  try {
    mod = (await import(pathToFileURL(join(MODELS_DIR, "_schemas", `${module}.mjs`)).href)) as { validate?: ValidateFn };
  } catch {
    return undefined;
  }
  if (typeof mod.validate !== "function") return undefined;
  validators.set(module, mod.validate);
  return mod.validate;
}

/**
 * The schema module of a built-in kind, read from the kubernetes-models class for it (whose module
 * imports exactly that definition's validator), or undefined for a kind Kubernetes does not have.
 */
function schemaModuleOf(apiVersion: string, kind: string): string | undefined {
  if (!/^[a-z0-9.-]*\/?v[0-9a-z]+$/.test(apiVersion) || !/^[A-Za-z0-9]+$/.test(kind)) return undefined;
  let source: string;
  try {
    source = readFileSync(join(MODELS_DIR, apiVersion, `${kind}.mjs`), "utf8");
  } catch {
    return undefined;
  }
  return /_schemas\/(\w+)\.mjs/.exec(source)?.[1];
}

// ---- the unknown-field recorder ------------------------------------------------------------------------

interface Tracked {
  path: Array<string | number>;
  obj: Record<string, unknown>;
  read: Set<string>;
  enumerated: boolean;
}

function track(value: unknown, path: Array<string | number>, all: Tracked[]): unknown {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) {
    return new Proxy(value, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver) as unknown;
        if (typeof key === "string" && /^\d+$/.test(key)) return track(v, [...path, Number(key)], all);
        return v;
      },
    });
  }
  const entry: Tracked = { path, obj: value as Record<string, unknown>, read: new Set(), enumerated: false };
  all.push(entry);
  return new Proxy(value, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver) as unknown;
      if (typeof key !== "string") return v;
      entry.read.add(key);
      return Object.prototype.hasOwnProperty.call(target, key) ? track(v, [...path, key], all) : v;
    },
    has(target, key) {
      if (typeof key === "string") entry.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      entry.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

// ---- messages ------------------------------------------------------------------------------------------

export function fieldPath(path: ReadonlyArray<string | number>): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else out += /^[A-Za-z_$][\w$-]*$/.test(seg) ? (out === "" ? seg : `.${seg}`) : `[${JSON.stringify(seg)}]`;
  }
  return out === "" ? "(top level)" : out;
}

function pointerToPath(pointer: string, root: unknown): Array<string | number> {
  if (pointer === "") return [];
  const out: Array<string | number> = [];
  let node: unknown = root;
  for (const raw of pointer.slice(1).split("/")) {
    const seg = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    if (Array.isArray(node)) {
      out.push(Number(seg));
      node = node[Number(seg)];
    } else {
      out.push(seg);
      node = node !== null && typeof node === "object" ? (node as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

function valueAt(root: unknown, path: ReadonlyArray<string | number>): unknown {
  let node = root;
  for (const seg of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string | number, unknown>)[seg];
  }
  return node;
}

function describeValue(value: unknown): string {
  if (value === null) return "null (an empty value)";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") {
    const keys = Object.keys(value as object);
    const onlyKey = keys.length === 1 ? (keys[0] as string) : undefined;
    if (onlyKey !== undefined && (value as Record<string, unknown>)[onlyKey] === null) {
      return `a mapping {${JSON.stringify(onlyKey)}: null}: YAML reads a plain value ending in ":" as a one-key mapping; quote it ("${onlyKey}:")`;
    }
    return `a mapping with keys ${keys.map((k) => JSON.stringify(k)).join(", ")}`;
  }
  if (typeof value === "string") return `the string ${JSON.stringify(value)}${/^-?\d+(\.\d+)?$/.test(value) ? " (drop the quotes for a number)" : ""}`;
  return `${typeof value} ${JSON.stringify(value)}`;
}

function explain(error: AjvError, value: unknown): string {
  const p = error.params;
  switch (error.keyword) {
    case "type":
      return `must be ${String(p.type)}, not ${describeValue(value)}`;
    case "enum":
      return `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(", ")}, not ${describeValue(value)}`;
    case "format":
      return `must be in ${String(p.format)} format, not ${describeValue(value)}`;
    case "pattern":
      return `must match ${String(p.pattern)}, not ${describeValue(value)}`;
    default:
      return `fails schema rule "${error.keyword}" ${JSON.stringify(p)} (value: ${describeValue(value)})`;
  }
}

// ---- YAML ----------------------------------------------------------------------------------------------

function lineOfPath(doc: Document, counter: LineCounter, path: ReadonlyArray<string | number>, fallback: number): number {
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node && Array.isArray(node.range)) return counter.linePos(node.range[0]).line;
  }
  return fallback;
}

/**
 * A plain scalar like `--lock=kubernetes:` inside a list becomes `{"--lock=kubernetes": null}`. In YAML
 * that Kubernetes does not validate (or where a mapping is allowed) this is still almost surely a
 * mistake: a key that looks like a command-line flag with no value.
 */
function colonTraps(doc: Document, counter: LineCounter): Array<{ line: number; key: string }> {
  const found: Array<{ line: number; key: string }> = [];
  visit(doc, {
    Pair(_key, pair) {
      if (!isPair(pair) || !isScalar(pair.key)) return;
      const key = String(pair.key.value);
      const empty = pair.value === null || (isScalar(pair.value) && pair.value.value === null && pair.value.source === "");
      if (empty && /^-/.test(key)) {
        const range = pair.key.range;
        found.push({ line: range ? counter.linePos(range[0]).line : 0, key });
      }
    },
  });
  return found;
}

export async function checkYaml(source: YamlSource): Promise<YamlCheck> {
  const offset = source.lineOffset ?? 0;
  const expect = source.expect ?? { kind: "object" };
  const counter = new LineCounter();
  const docs = parseAllDocuments(source.text, { lineCounter: counter, uniqueKeys: true, prettyErrors: false });
  const result: YamlCheck = { objects: [], others: [], problems: [] };
  const at = (line: number): string => `${source.file}:${line + offset}`;
  const docList = Array.isArray(docs) ? docs : [docs];
  for (const doc of docList) {
    const startLine = doc.contents?.range ? counter.linePos(doc.contents.range[0]).line : 1;
    if (doc.errors.length > 0) {
      for (const e of doc.errors) {
        const line = e.linePos?.[0]?.line ?? startLine;
        result.problems.push(`${at(line)}: YAML does not parse: ${e.message.split("\n")[0]}`);
      }
      continue;
    }
    if (doc.contents === null) continue;
    for (const trap of colonTraps(doc, counter)) {
      result.problems.push(
        `${at(trap.line)}: ${JSON.stringify(trap.key + ":")} is read by YAML as a mapping key with no value, not as a string: quote it ("${trap.key}:")`,
      );
    }
    const value = doc.toJS({ maxAliasCount: 100 }) as unknown;
    let definition: string | undefined;
    let label: string;
    let partial = false;
    const obj = value !== null && typeof value === "object" && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
    if (expect.kind === "fragment") {
      definition = schemaModuleName(expect.definition);
      label = expect.definition;
      partial = expect.partial;
    } else if (obj && typeof obj.apiVersion === "string" && typeof obj.kind === "string") {
      const name = (obj.metadata as { name?: unknown } | undefined)?.name;
      label = `${obj.apiVersion} ${obj.kind}${typeof name === "string" ? ` ${name}` : ""}`;
      definition = schemaModuleOf(obj.apiVersion, obj.kind);
      if (!definition) {
        result.problems.push(`${at(startLine)}: ${label}: Kubernetes has no built-in kind ${JSON.stringify(obj.kind)} in ${JSON.stringify(obj.apiVersion)}`);
        continue;
      }
    } else if (expect.kind === "any") {
      result.others.push({ file: source.file, line: startLine + offset, value });
      continue;
    } else {
      result.problems.push(`${at(startLine)}: not a Kubernetes object: apiVersion and kind are required`);
      continue;
    }
    const validate = await validatorFor(definition);
    if (!validate) {
      result.problems.push(`${at(startLine)}: no Kubernetes schema definition ${JSON.stringify(label)} (expected e.g. io.k8s.api.core.v1.Container)`);
      continue;
    }
    result.objects.push({ file: source.file, line: startLine + offset, label, definition, value });

    const tracked: Tracked[] = [];
    const ok = validate(track(value, [], tracked));
    const errors = ok ? [] : (validate.errors ?? []);
    const badPaths: string[] = [];
    for (const error of errors) {
      let path = pointerToPath(error.instancePath, value);
      if (error.keyword === "required") {
        if (partial && path.length === 0) continue;
        path = [...path, String(error.params.missingProperty)];
        badPaths.push(fieldPath(path));
        result.problems.push(`${at(lineOfPath(doc, counter, path, startLine))}: ${label}: ${fieldPath(path)}: required field is missing`);
        continue;
      }
      badPaths.push(fieldPath(path));
      result.problems.push(
        `${at(lineOfPath(doc, counter, path, startLine))}: ${label}: ${fieldPath(path)}: ${explain(error, valueAt(value, path))}`,
      );
    }
    for (const t of tracked) {
      // Untouched objects are below a value the validator rejected or a free-form field: not judged.
      if (t.read.size === 0 && !t.enumerated) continue;
      if (t.enumerated) continue;
      for (const key of Object.keys(t.obj)) {
        if (t.read.has(key)) continue;
        const path = [...t.path, key];
        const fp = fieldPath(path);
        if (badPaths.some((b) => fp.startsWith(b) && b !== fp)) continue;
        result.problems.push(`${at(lineOfPath(doc, counter, path, startLine))}: ${label}: ${fp}: unknown field (not in the Kubernetes schema)`);
      }
    }
  }
  // In file order, as an editor would walk them.
  const lineOf = (p: string): number => Number(/^[^:]*:(\d+):/.exec(p)?.[1] ?? 0);
  result.problems.sort((a, b) => lineOf(a) - lineOf(b));
  return result;
}
