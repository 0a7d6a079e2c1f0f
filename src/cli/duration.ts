/**
 * Durations in Go / Kubernetes syntax (`1m30s`, `500ms`, `1.5h`), the syntax `kube-controller-manager
 * --leader-elect-lease-duration` and every Go peer of leader-run accept.
 *
 * Hand-written rather than a dependency (`ms`, `parse-duration`): those accept other syntaxes (`1 day`,
 * `1.5 hours`, plain numbers as milliseconds) and differ on edge cases, whereas a flag value that works
 * for a Go tool must mean exactly the same here. This is a line-by-line port of Go's
 * `time.ParseDuration` (same grammar, units, and overflow rules, in integer nanoseconds), with one
 * extension: a bare number means seconds (`15`, `1.5`), as in `sleep`. Negative durations are refused
 * because no leader-run option has a meaning for them.
 */

const NS_PER_MS = 1_000_000n;
/** 1<<63: Go works in uint64 and checks against this bound. */
const LIMIT = 1n << 63n;

const UNITS: ReadonlyMap<string, bigint> = new Map([
  ["ns", 1n],
  ["us", 1_000n],
  ["\u00b5s", 1_000n], // U+00B5 micro sign
  ["\u03bcs", 1_000n], // U+03BC Greek small letter mu
  ["ms", 1_000_000n],
  ["s", 1_000_000_000n],
  ["m", 60_000_000_000n],
  ["h", 3_600_000_000_000n],
]);

/** Why a value is not a duration; `DurationSyntaxError.message` is ready for the user. */
export type DurationProblem = "syntax" | "negative" | "overflow";

export class DurationSyntaxError extends Error {
  constructor(
    readonly value: string,
    readonly problem: DurationProblem,
    readonly flag?: string,
  ) {
    super(durationMessage(value, problem, flag));
    this.name = "DurationSyntaxError";
  }
}

function durationMessage(value: string, problem: DurationProblem, flag?: string): string {
  const prefix = flag ? `${flag}: ` : "";
  const quoted = JSON.stringify(value);
  switch (problem) {
    case "negative":
      return `${prefix}${quoted} is negative; use a duration of 0 or more, like 15s`;
    case "overflow":
      return `${prefix}${quoted} is too long; the longest duration is 2562047h47m16.854775807s`;
    default:
      return `${prefix}${quoted} is not a duration; use Go syntax like 15s, 1m30s or 500ms`;
  }
}

/** Our one extension to Go's grammar: a number without a unit is seconds. */
const BARE_NUMBER = /^(?:\d+(?:\.\d*)?|\.\d+)$/;

/**
 * Parses a duration into milliseconds (fractional for sub-millisecond values: `1us` is 0.001).
 * `flag` (e.g. `--lease-duration`) prefixes the error message.
 * @throws DurationSyntaxError
 */
export function parseDuration(text: string, flag?: string): number {
  return Number(parseDurationNs(text, flag)) / Number(NS_PER_MS);
}

/** As `parseDuration`, in exact integer nanoseconds. */
export function parseDurationNs(text: string, flag?: string): bigint {
  let body = text;
  const negative = body.startsWith("-");
  if (negative || body.startsWith("+")) body = body.slice(1);
  const ns = goParse(BARE_NUMBER.test(body) ? `${body}s` : body, text, flag);
  // Go accepts "-5s"; we parse it fully first so garbage is reported as garbage, not as negative.
  if (negative && ns !== 0n) throw new DurationSyntaxError(text, "negative", flag);
  return ns;
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

/** Go's `time.ParseDuration` for a value whose sign was already removed. */
function goParse(input: string, orig: string, flag?: string): bigint {
  const invalid = (): DurationSyntaxError => new DurationSyntaxError(orig, "syntax", flag);
  const overflow = (): DurationSyntaxError => new DurationSyntaxError(orig, "overflow", flag);
  let s = input;
  if (s === "0") return 0n;
  if (s === "") throw invalid();
  let d = 0n;
  while (s !== "") {
    if (!(s[0] === "." || isDigit(s[0]))) throw invalid();
    // [0-9]*
    let i = 0;
    let v = 0n;
    while (isDigit(s[i])) {
      if (v > LIMIT / 10n) throw overflow();
      v = v * 10n + BigInt(s.charCodeAt(i) - 48);
      if (v > LIMIT) throw overflow();
      i++;
    }
    const pre = i > 0;
    s = s.slice(i);
    // (\.[0-9]*)?
    let f = 0n;
    let scale = 1;
    let post = false;
    if (s[0] === ".") {
      s = s.slice(1);
      let j = 0;
      let fracOverflow = false;
      while (isDigit(s[j])) {
        if (!fracOverflow) {
          if (f > (LIMIT - 1n) / 10n) {
            fracOverflow = true;
          } else {
            const y = f * 10n + BigInt(s.charCodeAt(j) - 48);
            if (y > LIMIT) fracOverflow = true;
            else {
              f = y;
              scale *= 10;
            }
          }
        }
        j++;
      }
      post = j > 0;
      s = s.slice(j);
    }
    if (!pre && !post) throw invalid();
    // unit: everything up to the next digit or '.'
    let k = 0;
    while (k < s.length && s[k] !== "." && !isDigit(s[k])) k++;
    if (k === 0) throw invalid(); // missing unit
    const unit = UNITS.get(s.slice(0, k));
    if (unit === undefined) throw invalid();
    s = s.slice(k);
    if (v > LIMIT / unit) throw overflow();
    v *= unit;
    if (f > 0n) {
      // Go: uint64(float64(f) * (float64(unit) / scale)), truncated toward zero.
      v += BigInt(Math.trunc(Number(f) * (Number(unit) / scale)));
      if (v > LIMIT) throw overflow();
    }
    d += v;
    if (d > LIMIT) throw overflow();
  }
  if (d > LIMIT - 1n) throw overflow();
  return d;
}

/**
 * Go's `Duration.String()` for a number of milliseconds (rounded to whole nanoseconds), so what
 * leader-run prints can be pasted back into a flag: `1m30s`, `2.5s`, `500ms`, `1h0m0s`, `0s`.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  let u = BigInt(Math.round(ms * 1e6));
  const neg = u < 0n;
  if (neg) u = -u;
  let out: string;
  if (u < 1_000_000_000n) {
    if (u === 0n) return "0s";
    if (u < 1_000n) out = `${u}ns`;
    else if (u < 1_000_000n) out = `${fmtFrac(u, 3)}\u00b5s`;
    else out = `${fmtFrac(u, 6)}ms`;
  } else {
    const secs = fmtFrac(u, 9);
    let rest = u / 1_000_000_000n;
    out = `${fracPart(secs, rest % 60n)}s`;
    rest /= 60n;
    if (rest > 0n) {
      out = `${rest % 60n}m${out}`;
      rest /= 60n;
      if (rest > 0n) out = `${rest}h${out}`;
    }
  }
  return neg ? `-${out}` : out;
}

/** `v / 10^prec` with trailing fractional zeros (and a bare point) removed. */
function fmtFrac(v: bigint, prec: number): string {
  const div = 10n ** BigInt(prec);
  const int = v / div;
  const frac = (v % div).toString().padStart(prec, "0").replace(/0+$/, "");
  return frac === "" ? `${int}` : `${int}.${frac}`;
}

/** Re-uses the fractional digits of `fmtFrac(u, 9)` on the seconds-within-the-minute value. */
function fracPart(secsWithFrac: string, wholeSecs: bigint): string {
  const dot = secsWithFrac.indexOf(".");
  return dot < 0 ? `${wholeSecs}` : `${wholeSecs}${secsWithFrac.slice(dot)}`;
}
