/**
 * A JSON parser that keeps what `JSON.parse` throws away and Go's decoder looks at: the literal text of
 * every number (Go refuses `1.0` or `1e3` for an int32 field, JavaScript cannot tell them from `1` and
 * `1000`) and duplicate object keys (the API server warns about them, or rejects them when strict).
 */

export type JsonValue =
  | { type: "null" }
  | { type: "bool"; value: boolean }
  | { type: "number"; literal: string }
  | { type: "string"; value: string }
  | { type: "array"; items: JsonValue[] }
  | { type: "object"; entries: Array<[string, JsonValue]> };

export class JsonSyntaxError extends Error {}

export function parseJson(text: string): JsonValue {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && " \t\n\r".includes(text[i] as string)) i++;
  };
  const fail = (what: string): never => {
    throw new JsonSyntaxError(`invalid character ${JSON.stringify(text[i] ?? "EOF")} ${what} at offset ${i}`);
  };
  const value = (): JsonValue => {
    ws();
    const c = text[i];
    if (c === "{") return object();
    if (c === "[") return array();
    if (c === '"') return { type: "string", value: string() };
    if (c === "t" && text.startsWith("true", i)) {
      i += 4;
      return { type: "bool", value: true };
    }
    if (c === "f" && text.startsWith("false", i)) {
      i += 5;
      return { type: "bool", value: false };
    }
    if (c === "n" && text.startsWith("null", i)) {
      i += 4;
      return { type: "null" };
    }
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i));
    if (m) {
      i += m[0].length;
      return { type: "number", literal: m[0] };
    }
    return fail("looking for beginning of value");
  };
  const string = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === "\\") i++;
      else if ((text.charCodeAt(i) ?? 0) < 0x20) fail("in string literal");
      i++;
    }
    if (i >= text.length) fail("in string literal");
    i++;
    try {
      return JSON.parse(text.slice(start, i)) as string;
    } catch {
      return fail("in string escape code");
    }
  };
  const object = (): JsonValue => {
    i++;
    const entries: Array<[string, JsonValue]> = [];
    ws();
    if (text[i] === "}") {
      i++;
      return { type: "object", entries };
    }
    for (;;) {
      ws();
      if (text[i] !== '"') fail("looking for beginning of object key string");
      const key = string();
      ws();
      if (text[i] !== ":") fail("after object key");
      i++;
      entries.push([key, value()]);
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "}") {
        i++;
        return { type: "object", entries };
      }
      fail("after object key:value pair");
    }
  };
  const array = (): JsonValue => {
    i++;
    const items: JsonValue[] = [];
    ws();
    if (text[i] === "]") {
      i++;
      return { type: "array", items };
    }
    for (;;) {
      items.push(value());
      ws();
      if (text[i] === ",") {
        i++;
        continue;
      }
      if (text[i] === "]") {
        i++;
        return { type: "array", items };
      }
      fail("after array element");
    }
  };
  const result = value();
  ws();
  if (i < text.length) fail("after top-level value");
  return result;
}

/** Go's name for a JSON value's kind, as in `cannot unmarshal <kind> into ...`. */
export function jsonKind(v: JsonValue): string {
  return v.type === "bool" ? "bool" : v.type;
}

/** Plain JavaScript value (numbers through `Number`), for fields the server stores opaquely. */
export function toPlain(v: JsonValue): unknown {
  switch (v.type) {
    case "null":
      return null;
    case "bool":
      return v.value;
    case "number":
      return Number(v.literal);
    case "string":
      return v.value;
    case "array":
      return v.items.map(toPlain);
    case "object":
      return Object.fromEntries(v.entries.map(([k, x]) => [k, toPlain(x)]));
  }
}
