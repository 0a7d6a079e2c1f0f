/**
 * Decoding a request body the way the API server's Go decoder does: typed fields (a string where an
 * int32 belongs is a 400, so is `1.5` or `1e3` for an int32), MicroTime/Time parsed with Go's rules,
 * `null` leaving a pointer unset, case-sensitive names, unknown and duplicate fields collected so the
 * server can warn about them (fieldValidation=Warn, the default) or reject them (Strict).
 */
import { parseGoTime, RFC3339, RFC3339_MICRO, GoTimeParseError, type GoTime } from "./go-time.js";
import { jsonKind, toPlain, type JsonValue } from "./json.js";

type Scalar = "string" | "int32" | "int64" | "bool" | "microtime" | "time" | "stringMap" | "stringArray" | "opaque";
interface Struct {
  name: string;
  fields: Record<string, Schema>;
}
type Schema = Scalar | Struct;

export class DecodeError extends Error {}

export interface Decoded {
  value: Record<string, unknown>;
  unknownFields: string[];
  duplicateFields: string[];
}

const OBJECT_META: Struct = {
  name: "ObjectMeta",
  fields: {
    name: "string",
    generateName: "string",
    namespace: "string",
    selfLink: "string",
    uid: "string",
    resourceVersion: "string",
    generation: "int64",
    creationTimestamp: "time",
    deletionTimestamp: "time",
    deletionGracePeriodSeconds: "int64",
    labels: "stringMap",
    annotations: "stringMap",
    ownerReferences: "opaque",
    finalizers: "stringArray",
    managedFields: "opaque",
  },
};

export const LEASE_SCHEMA: Struct = {
  name: "Lease",
  fields: {
    apiVersion: "string",
    kind: "string",
    metadata: OBJECT_META,
    spec: {
      name: "LeaseSpec",
      fields: {
        holderIdentity: "string",
        leaseDurationSeconds: "int32",
        acquireTime: "microtime",
        renewTime: "microtime",
        leaseTransitions: "int32",
        strategy: "string",
        preferredHolder: "string",
      },
    },
  },
};

export const EVENT_SCHEMA: Struct = {
  name: "Event",
  fields: {
    apiVersion: "string",
    kind: "string",
    metadata: OBJECT_META,
    involvedObject: {
      name: "ObjectReference",
      fields: {
        kind: "string",
        namespace: "string",
        name: "string",
        uid: "string",
        apiVersion: "string",
        resourceVersion: "string",
        fieldPath: "string",
      },
    },
    reason: "string",
    message: "string",
    source: { name: "EventSource", fields: { component: "string", host: "string" } },
    firstTimestamp: "time",
    lastTimestamp: "time",
    count: "int32",
    type: "string",
    eventTime: "microtime",
    series: "opaque",
    action: "string",
    related: "opaque",
    reportingComponent: "string",
    reportingInstance: "string",
  },
};

export const DELETE_OPTIONS_SCHEMA: Struct = {
  name: "DeleteOptions",
  fields: {
    apiVersion: "string",
    kind: "string",
    gracePeriodSeconds: "int64",
    preconditions: { name: "Preconditions", fields: { uid: "string", resourceVersion: "string" } },
    orphanDependents: "bool",
    propagationPolicy: "string",
    dryRun: "stringArray",
  },
};

const INT_RANGE = { int32: [-(2 ** 31), 2 ** 31 - 1], int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER] } as const;

/** Decodes `root` (an object) against `schema`; throws DecodeError with Go's message. */
export function decodeObject(root: JsonValue, schema: Struct): Decoded {
  const unknownFields: string[] = [];
  const duplicateFields: string[] = [];
  const cannot = (v: JsonValue, struct: string, path: string, type: string, literal = false): DecodeError =>
    new DecodeError(
      `json: cannot unmarshal ${jsonKind(v)}${literal && v.type === "number" ? ` ${v.literal}` : ""} into Go struct field ${struct}.${path} of type ${type}`,
    );

  const goType = (s: Schema): string => {
    if (typeof s !== "string") return `v1.${s.name}`;
    return {
      string: "string",
      int32: "int32",
      int64: "int64",
      bool: "bool",
      microtime: "v1.MicroTime",
      time: "v1.Time",
      stringMap: "map[string]string",
      stringArray: "[]string",
      opaque: "json.RawMessage",
    }[s];
  };

  const decode = (v: JsonValue, s: Schema, struct: string, path: string): unknown => {
    if (v.type === "null") return undefined;
    if (typeof s !== "string") {
      if (v.type !== "object") throw cannot(v, struct, path, goType(s));
      const out: Record<string, unknown> = {};
      const seen = new Set<string>();
      for (const [key, child] of v.entries) {
        const childPath = path ? `${path}.${key}` : key;
        if (seen.has(key)) duplicateFields.push(childPath);
        seen.add(key);
        const fieldSchema = Object.hasOwn(s.fields, key) ? s.fields[key] : undefined;
        if (fieldSchema === undefined) {
          unknownFields.push(childPath);
          continue;
        }
        const decoded = decode(child, fieldSchema, s.name, childPath);
        if (decoded === undefined) delete out[key];
        else out[key] = decoded;
      }
      return out;
    }
    switch (s) {
      case "string":
        if (v.type !== "string") throw cannot(v, struct, path, "string");
        return v.value;
      case "bool":
        if (v.type !== "bool") throw cannot(v, struct, path, "bool");
        return v.value;
      case "int32":
      case "int64": {
        if (v.type !== "number") throw cannot(v, struct, path, s);
        const [min, max] = INT_RANGE[s];
        if (!/^-?\d+$/.test(v.literal) || Number(v.literal) < min || Number(v.literal) > max) {
          throw cannot(v, struct, path, s, true);
        }
        return Number(v.literal);
      }
      case "microtime":
      case "time": {
        if (v.type !== "string") {
          // Go's UnmarshalJSON of these types first decodes a JSON string.
          throw new DecodeError(`json: cannot unmarshal ${jsonKind(v)} into Go value of type string`);
        }
        try {
          return parseGoTime(v.value, s === "microtime" ? RFC3339_MICRO : RFC3339) satisfies GoTime;
        } catch (error) {
          if (error instanceof GoTimeParseError) throw new DecodeError(error.message);
          throw error;
        }
      }
      case "stringMap": {
        if (v.type !== "object") throw cannot(v, struct, path, "map[string]string");
        const out: Record<string, string> = {};
        for (const [key, child] of v.entries) {
          if (child.type === "null") out[key] = "";
          else if (child.type !== "string") throw cannot(child, struct, `${path}.${key}`, "string");
          else out[key] = child.value;
        }
        return out;
      }
      case "stringArray": {
        if (v.type !== "array") throw cannot(v, struct, path, "[]string");
        return v.items.map((item, i) => {
          if (item.type !== "string") throw cannot(item, struct, `${path}[${i}]`, "string");
          return item.value;
        });
      }
      case "opaque":
        return toPlain(v);
    }
  };

  if (root.type !== "object") {
    throw new DecodeError(`json: cannot unmarshal ${jsonKind(root)} into Go value of type v1.${schema.name}`);
  }
  const value = decode(root, schema, schema.name, "") as Record<string, unknown>;
  return { value, unknownFields, duplicateFields };
}
