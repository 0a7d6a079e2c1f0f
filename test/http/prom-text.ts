/**
 * A small strict checker of the Prometheus text exposition format 0.0.4, for tests only (no extra
 * packages): HELP/TYPE lines, metric and label name syntax, label value escapes, numeric values,
 * families kept together, no duplicate series, and histogram consistency.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
  timestamp?: number;
}

export interface Family {
  name: string;
  type: "counter" | "gauge" | "histogram" | "summary" | "untyped";
  help?: string;
  samples: Sample[];
}

export class PromTextError extends Error {
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.name = "PromTextError";
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);

/** Go's `strconv.ParseFloat`, which Prometheus uses: decimals, and NaN/Inf/Infinity in any case. */
function parseValue(text: string, line: number, what = "value"): number {
  const special = /^([+-]?)(inf|infinity|nan)$/i.exec(text);
  if (special) {
    if (special[2]?.toLowerCase() === "nan") {
      if (special[1] !== "") throw new PromTextError(line, `${what} ${JSON.stringify(text)} is not a number`);
      return Number.NaN;
    }
    return special[1] === "-" ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  if (!FLOAT.test(text)) throw new PromTextError(line, `${what} ${JSON.stringify(text)} is not a number`);
  return Number(text);
}

function belongs(sample: string, family: Family): boolean {
  switch (family.type) {
    case "histogram":
      return [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`].includes(sample);
    case "summary":
      return [family.name, `${family.name}_sum`, `${family.name}_count`].includes(sample);
    default:
      return sample === family.name;
  }
}

/** Parses `{a="x",b="y"}` starting at `text[0] === "{"`; returns the labels and the rest of the line. */
function parseLabels(text: string, line: number): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    if (text[i] === "}") return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf("=", i);
    if (eq === -1) throw new PromTextError(line, "label without =");
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new PromTextError(line, `bad label name ${JSON.stringify(name)}`);
    if (name.startsWith("__")) throw new PromTextError(line, `reserved label name ${name}`);
    if (Object.hasOwn(labels, name)) throw new PromTextError(line, `duplicate label ${name}`);
    if (text[eq + 1] !== '"') throw new PromTextError(line, `label ${name}: value must be quoted`);
    let value = "";
    let j = eq + 2;
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new PromTextError(line, `label ${name}: unterminated value`);
      if (c === '"') break;
      if (c === "\\") {
        const e = text[j + 1];
        if (e === "\\") value += "\\";
        else if (e === '"') value += '"';
        else if (e === "n") value += "\n";
        else throw new PromTextError(line, `label ${name}: bad escape \\${e ?? ""}`);
        j += 2;
        continue;
      }
      value += c;
      j += 1;
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i += 1;
    else if (text[i] !== "}") throw new PromTextError(line, "expected , or } after a label");
  }
}

function seriesKey(sample: Sample): string {
  const labels = Object.keys(sample.labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(sample.labels[k])}`);
  return `${sample.name}{${labels.join(",")}}`;
}

/** Parses and validates an exposition; throws `PromTextError` naming the first bad line. */
export function parsePrometheusText(text: string): Map<string, Family> {
  if (text !== "" && !text.endsWith("\n")) throw new PromTextError(0, "exposition must end with a newline");
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  const series = new Set<string>();
  let current: Family | undefined;

  const enter = (name: string, line: number): Family => {
    if (current?.name === name) return current;
    if (current) finished.add(current.name);
    if (finished.has(name)) throw new PromTextError(line, `metric family ${name} is not kept together`);
    const family: Family = { name, type: "untyped", samples: [] };
    families.set(name, family);
    current = family;
    return family;
  };

  const lines = text.split("\n");
  lines.pop();
  const typed = new Set<string>();
  lines.forEach((raw, index) => {
    const line = index + 1;
    if (raw === "") return;
    if (raw.startsWith("#")) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(raw);
      if (!m) return; // a plain comment
      const [, keyword, name = "", rest = ""] = m;
      if (!METRIC_NAME.test(name)) throw new PromTextError(line, `bad metric name ${JSON.stringify(name)}`);
      const family = enter(name, line);
      if (keyword === "HELP") {
        if (family.help !== undefined) throw new PromTextError(line, `second HELP for ${name}`);
        if (/\\(?![\\n])/.test(rest)) throw new PromTextError(line, `bad escape in HELP for ${name}`);
        family.help = rest.replace(/\\(\\|n)/g, (_m, e: string) => (e === "n" ? "\n" : "\\"));
      } else {
        if (typed.has(name)) throw new PromTextError(line, `second TYPE for ${name}`);
        if (family.samples.length > 0) throw new PromTextError(line, `TYPE for ${name} after its samples`);
        if (!TYPES.has(rest)) throw new PromTextError(line, `unknown type ${JSON.stringify(rest)}`);
        family.type = rest as Family["type"];
        typed.add(name);
      }
      return;
    }

    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(raw);
    if (!nameMatch) throw new PromTextError(line, `bad sample line ${JSON.stringify(raw.slice(0, 80))}`);
    const name = nameMatch[0];
    let rest = raw.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, line));
    const fields = /^[ \t]+(\S+)(?:[ \t]+(\S+))?$/.exec(rest);
    if (!fields) throw new PromTextError(line, `expected " value [timestamp]" after ${name}`);
    const sample: Sample = { name, labels, value: parseValue(fields[1] ?? "", line) };
    if (fields[2] !== undefined) {
      if (!/^-?\d+$/.test(fields[2])) throw new PromTextError(line, `timestamp ${JSON.stringify(fields[2])} is not an integer`);
      sample.timestamp = Number(fields[2]);
    }
    const family = current && belongs(name, current) ? current : enter(name, line);
    if (!belongs(name, family)) throw new PromTextError(line, `sample ${name} does not belong to ${family.name}`);
    if (family.type === "counter" && !(sample.value >= 0)) {
      throw new PromTextError(line, `counter ${name} must be a non-negative number, got ${fields[1] ?? ""}`);
    }
    const key = seriesKey(sample);
    if (series.has(key)) throw new PromTextError(line, `duplicate series ${key}`);
    series.add(key);
    family.samples.push(sample);
  });

  for (const family of families.values()) {
    if (family.type === "histogram") checkHistogram(family);
  }
  return families;
}

function checkHistogram(family: Family): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of family.samples) {
    const { le, ...rest } = s.labels;
    const key = seriesKey({ name: "", labels: rest, value: 0 });
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { buckets: [] }));
    if (s.name.endsWith("_bucket")) {
      if (le === undefined) throw new PromTextError(0, `${s.name} without an le label`);
      g.buckets.push([parseValue(le, 0, "le"), s.value]);
    } else if (le !== undefined) {
      throw new PromTextError(0, `${s.name} must not have an le label`);
    } else if (s.name.endsWith("_sum")) g.sum = s.value;
    else g.count = s.value;
  }
  for (const [key, g] of groups) {
    const where = `${family.name}${key}`;
    if (g.sum === undefined || g.count === undefined) throw new PromTextError(0, `${where}: missing _sum or _count`);
    g.buckets.sort((a, b) => a[0] - b[0]);
    const last = g.buckets.at(-1);
    if (!last || last[0] !== Number.POSITIVE_INFINITY) throw new PromTextError(0, `${where}: missing le="+Inf" bucket`);
    if (last[1] !== g.count) throw new PromTextError(0, `${where}: +Inf bucket ${last[1]} differs from _count ${g.count}`);
    for (let i = 1; i < g.buckets.length; i += 1) {
      const prev = g.buckets[i - 1];
      const cur = g.buckets[i];
      if (prev && cur && cur[1] < prev[1]) throw new PromTextError(0, `${where}: buckets are not cumulative`);
    }
  }
}

/** The value of the one sample with exactly these labels (`undefined` if absent). */
export function valueOf(families: Map<string, Family>, sample: string, labels: Record<string, string> = {}): number | undefined {
  const want = seriesKey({ name: sample, labels, value: 0 });
  for (const family of families.values()) {
    for (const s of family.samples) if (seriesKey(s) === want) return s.value;
  }
  return undefined;
}
