/**
 * What the API server accepts for `metav1.MicroTime` (Lease acquireTime/renewTime) and `metav1.Time`
 * (metadata timestamps), and how it prints them back.
 *
 * The server decodes MicroTime with Go's `time.Parse("2006-01-02T15:04:05.000000Z07:00", s)` and Time
 * with `time.Parse(time.RFC3339, s)`. This is a port of the parts of Go's `time.Parse` those two layouts
 * exercise (Go 1.23/1.24, as in Kubernetes 1.33), quirks included: the fraction of a MicroTime must have
 * exactly six digits after a `.` or `,`; the hour may have one digit; `Z` must be upper case; offsets
 * up to ±24:60 are allowed; RFC 3339 accepts any fraction although its layout has none.
 */

export interface GoTime {
  /** Whole seconds since the Unix epoch (UTC). */
  seconds: number;
  /** 0 to 999,999,999. */
  nanos: number;
}

export class GoTimeParseError extends Error {}

export const RFC3339 = "2006-01-02T15:04:05Z07:00";
export const RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00";

const isDigit = (s: string, i: number): boolean => i < s.length && s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57;
const commaOrPeriod = (c: string | undefined): boolean => c === "." || c === ",";

/** Go's `atoi`: optional sign, then digits only. */
function atoi(s: string): number | undefined {
  let neg = false;
  if (s.length > 0 && (s[0] === "-" || s[0] === "+")) {
    neg = s[0] === "-";
    s = s.slice(1);
  }
  if (!/^\d*$/.test(s)) return undefined;
  const x = s === "" ? 0 : Number(s);
  return neg ? -x : x;
}

/** Go's `getnum`: one or two digits; `fixed` demands two. */
function getnum(s: string, fixed: boolean): [number, string] | undefined {
  if (!isDigit(s, 0)) return undefined;
  if (!isDigit(s, 1)) {
    if (fixed) return undefined;
    return [s.charCodeAt(0) - 48, s.slice(1)];
  }
  return [(s.charCodeAt(0) - 48) * 10 + (s.charCodeAt(1) - 48), s.slice(2)];
}

/** Go's `parseNanoseconds` over `value[0:nbytes]` (separator included). */
function parseNanoseconds(value: string, nbytes: number): number | "bad" | "range" {
  if (!commaOrPeriod(value[0])) return "bad";
  if (nbytes > 10) nbytes = 10;
  const ns = atoi(value.slice(1, nbytes));
  if (ns === undefined) return "bad";
  if (ns < 0) return "range";
  return ns * 10 ** (10 - nbytes);
}

const quote = (s: string): string => JSON.stringify(s);

function daysIn(month: number, year: number): number {
  if (month === 2) return (year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0)) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Parses `value` with Go's semantics for `layout` (RFC3339 or RFC3339_MICRO); throws Go's message. */
export function parseGoTime(value: string, layout: typeof RFC3339 | typeof RFC3339_MICRO): GoTime {
  const micro = layout === RFC3339_MICRO;
  const original = value;
  const cannot = (valueElem: string, layoutElem: string): GoTimeParseError =>
    new GoTimeParseError(
      `parsing time ${quote(original)} as ${quote(layout)}: cannot parse ${quote(valueElem)} as ${quote(layoutElem)}`,
    );
  const outOfRange = (what: string): GoTimeParseError =>
    new GoTimeParseError(`parsing time ${quote(original)}: ${what} out of range`);
  const literal = (lit: string): void => {
    if (!value.startsWith(lit)) throw cannot(value, lit);
    value = value.slice(lit.length);
  };

  // 2006
  let rest = "2006";
  if (value.length < 4 || !isDigit(value, 0)) throw cannot(value, rest);
  const year = atoi(value.slice(0, 4));
  if (year === undefined) throw cannot(value, rest);
  value = value.slice(4);
  literal("-");
  // 01
  rest = "01";
  let g = getnum(value, true);
  if (!g) throw cannot(value, rest);
  const month = g[0];
  value = g[1];
  if (month <= 0 || month > 12) throw outOfRange("month");
  literal("-");
  // 02 (range checked at the end, as in Go)
  rest = "02";
  g = getnum(value, true);
  if (!g) throw cannot(value, rest);
  const day = g[0];
  value = g[1];
  literal("T");
  // 15: one or two digits
  rest = "15";
  g = getnum(value, false);
  if (!g) throw cannot(value, rest);
  const hour = g[0];
  value = g[1];
  if (hour >= 24) throw outOfRange("hour");
  literal(":");
  // 04
  rest = "04";
  g = getnum(value, true);
  if (!g) throw cannot(value, rest);
  const minute = g[0];
  value = g[1];
  if (minute >= 60) throw outOfRange("minute");
  literal(":");
  // 05
  rest = "05";
  g = getnum(value, true);
  if (!g) throw cannot(value, rest);
  const second = g[0];
  value = g[1];
  if (second >= 60) throw outOfRange("second");
  let nanos = 0;
  if (micro) {
    // .000000: exactly six digits after the separator.
    rest = ".000000";
    if (value.length < 7) throw cannot(value, rest);
    const ns = parseNanoseconds(value, 7);
    if (ns === "bad") throw cannot(value, rest);
    if (ns === "range") throw outOfRange("fractional second");
    nanos = ns;
    value = value.slice(7);
  } else if (value.length >= 2 && commaOrPeriod(value[0]) && isDigit(value, 1)) {
    // A fraction the layout does not mention: any number of digits.
    let n = 2;
    while (n < value.length && isDigit(value, n)) n++;
    const ns = parseNanoseconds(value, n);
    if (ns === "bad") throw cannot(value, rest);
    if (ns === "range") throw outOfRange("fractional second");
    nanos = ns;
    value = value.slice(n);
  }
  // Z07:00
  rest = "Z07:00";
  let offset = 0;
  if (value.length >= 1 && value[0] === "Z") {
    value = value.slice(1);
  } else {
    if (value.length < 6 || value[3] !== ":") throw cannot(value, rest);
    const sign = value[0];
    const hh = getnum(value.slice(1, 3), true);
    const mm = getnum(value.slice(4, 6), true);
    if (!hh || !mm) throw cannot(value, rest);
    if (hh[0] > 24) throw outOfRange("time zone offset hour");
    if (mm[0] > 60) throw outOfRange("time zone offset minute");
    offset = (hh[0] * 60 + mm[0]) * 60;
    if (sign === "-") offset = -offset;
    else if (sign !== "+") throw cannot(value, rest);
    value = value.slice(6);
  }
  if (value.length > 0) throw new GoTimeParseError(`parsing time ${quote(original)}: extra text: ${quote(value)}`);
  if (day < 1 || day > daysIn(month, year)) throw outOfRange("day");

  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  return { seconds: d.getTime() / 1000 - offset, nanos };
}

/** How the server prints a MicroTime: UTC, exactly six fraction digits (truncated). */
export function formatMicroTime(t: GoTime): string {
  const base = new Date(t.seconds * 1000).toISOString().slice(0, 19);
  return `${base}.${String(Math.floor(t.nanos / 1000)).padStart(6, "0")}Z`;
}

/** How the server prints a metav1.Time: UTC, whole seconds. */
export function formatTime(t: GoTime): string {
  return `${new Date(t.seconds * 1000).toISOString().slice(0, 19)}Z`;
}

export function goTimeNow(): GoTime {
  const ms = Date.now();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}
