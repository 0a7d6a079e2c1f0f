/**
 * The API server's validation of Lease (pkg/apis/coordination/validation, Kubernetes 1.33), of the
 * object metadata every object gets (apimachinery ValidateObjectMeta) and of core/v1 Events as the
 * legacy events API checks them. Messages are the server's own, so a test can compare them.
 */
import type { StatusCause } from "./status.js";

const DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN = `${DNS1123_LABEL}(\\.${DNS1123_LABEL})*`;
const QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE = `(${QUALIFIED_NAME})?`;

const full = (re: string): RegExp => new RegExp(`^(?:${re})$`);
const subdomainRe = full(DNS1123_SUBDOMAIN);
const labelRe = full(DNS1123_LABEL);
const qualifiedNameRe = full(QUALIFIED_NAME);
const labelValueRe = full(LABEL_VALUE);

export function isDNS1123Subdomain(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 253) errs.push("must be no more than 253 characters");
  if (!subdomainRe.test(value)) {
    errs.push(
      "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
    );
  }
  return errs;
}

export function isDNS1123Label(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 63) errs.push("must be no more than 63 characters");
  if (!labelRe.test(value)) {
    errs.push(
      "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
    );
  }
  return errs;
}

/** `IsQualifiedName`: `[prefix/]name`, prefix a DNS subdomain, name at most 63 characters. */
export function isQualifiedName(value: string): string[] {
  const errs: string[] = [];
  const parts = value.split("/");
  let name: string;
  if (parts.length === 1) {
    name = parts[0] as string;
  } else if (parts.length === 2) {
    const prefix = parts[0] as string;
    name = parts[1] as string;
    if (prefix.length === 0) errs.push("prefix part must be non-empty");
    else for (const msg of isDNS1123Subdomain(prefix)) errs.push(`prefix part ${msg}`);
  } else {
    return [
      "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
    ];
  }
  if (name.length === 0) errs.push("name part must be non-empty");
  else if (name.length > 63) errs.push("name part must be no more than 63 characters");
  if (name.length > 0 && !qualifiedNameRe.test(name)) {
    errs.push(
      "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
    );
  }
  return errs;
}

export function isValidLabelValue(value: string): string[] {
  const errs: string[] = [];
  if (value.length > 63) errs.push("must be no more than 63 characters");
  if (!labelValueRe.test(value)) {
    errs.push(
      "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
    );
  }
  return errs;
}

/** Go's `%v` of a value in `Invalid value: ...`: strings quoted, numbers bare. */
const show = (v: unknown): string => (typeof v === "string" ? JSON.stringify(v) : String(v));

export const invalidCause = (field: string, value: unknown, detail: string): StatusCause => ({
  reason: "FieldValueInvalid",
  message: `Invalid value: ${show(value)}: ${detail}`,
  field,
});
const required = (field: string, detail: string): StatusCause => ({
  reason: "FieldValueRequired",
  message: `Required value${detail ? `: ${detail}` : ""}`,
  field,
});
const forbiddenCause = (field: string, detail: string): StatusCause => ({
  reason: "FieldValueForbidden",
  message: `Forbidden: ${detail}`,
  field,
});

export interface ObjectMetaInput {
  name?: string;
  generateName?: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024;

export function validateObjectMeta(meta: ObjectMetaInput): StatusCause[] {
  const causes: StatusCause[] = [];
  if (!meta.name && !meta.generateName) {
    causes.push(required("metadata.name", "name or generateName is required"));
  } else if (meta.name) {
    for (const msg of isDNS1123Subdomain(meta.name)) causes.push(invalidCause("metadata.name", meta.name, msg));
  }
  if (!meta.namespace) causes.push(required("metadata.namespace", ""));
  else for (const msg of isDNS1123Label(meta.namespace)) causes.push(invalidCause("metadata.namespace", meta.namespace, msg));
  for (const [k, v] of Object.entries(meta.labels ?? {})) {
    for (const msg of isQualifiedName(k)) causes.push(invalidCause("metadata.labels", k, msg));
    for (const msg of isValidLabelValue(v)) causes.push(invalidCause("metadata.labels", v, msg));
  }
  let size = 0;
  for (const [k, v] of Object.entries(meta.annotations ?? {})) {
    for (const msg of isQualifiedName(k.toLowerCase())) causes.push(invalidCause("metadata.annotations", k, msg));
    size += k.length + v.length;
  }
  if (size > TOTAL_ANNOTATION_SIZE_LIMIT) {
    causes.push({
      reason: "FieldValueTooLong",
      message: `Too long: may not be more than ${TOTAL_ANNOTATION_SIZE_LIMIT} bytes`,
      field: "metadata.annotations",
    });
  }
  return causes;
}

export interface LeaseSpecInput {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  leaseTransitions?: number;
  strategy?: string;
  preferredHolder?: string;
}

const LEASE_STRATEGIES = ["OldestEmulationVersion"];

/** `ValidateLeaseSpec`. holderIdentity and the times are not validated beyond decoding. */
export function validateLeaseSpec(spec: LeaseSpecInput): StatusCause[] {
  const causes: StatusCause[] = [];
  if (spec.leaseDurationSeconds !== undefined && spec.leaseDurationSeconds <= 0) {
    causes.push(invalidCause("spec.leaseDurationSeconds", spec.leaseDurationSeconds, "must be greater than 0"));
  }
  if (spec.leaseTransitions !== undefined && spec.leaseTransitions < 0) {
    causes.push(invalidCause("spec.leaseTransitions", spec.leaseTransitions, "must be greater than or equal to 0"));
  }
  if (spec.strategy !== undefined) {
    const parts = spec.strategy.split("/");
    if (parts.length === 1) {
      if (!LEASE_STRATEGIES.includes(spec.strategy)) {
        causes.push({
          reason: "FieldValueNotSupported",
          message: `Unsupported value: ${JSON.stringify(spec.strategy)}: supported values: ${LEASE_STRATEGIES.map((s) => JSON.stringify(s)).join(", ")}`,
          field: "spec.strategy.strategy",
        });
      }
    } else {
      for (const msg of isQualifiedName(spec.strategy)) {
        causes.push(invalidCause("spec.strategy.strategy", spec.strategy, msg));
      }
    }
  }
  if (spec.preferredHolder !== undefined && spec.preferredHolder !== "" && !spec.strategy) {
    causes.push(forbiddenCause("spec.preferredHolder", "may only be specified if `strategy` is defined"));
  }
  return causes;
}

export interface EventInput {
  namespace: string;
  involvedObjectNamespace?: string;
  reportingComponent?: string;
  reportingInstance?: string;
  hasEventTime: boolean;
}

/** The legacy (core/v1) event checks that a `kubectl describe`-style Event must pass. */
export function validateEvent(e: EventInput): StatusCause[] {
  const causes: StatusCause[] = [];
  if (!e.hasEventTime) {
    const ns = e.involvedObjectNamespace ?? "";
    if (ns === "" ? e.namespace !== "" && e.namespace !== "default" : ns !== e.namespace) {
      causes.push(invalidCause("involvedObject.namespace", ns, "does not match event.namespace"));
    }
  }
  if (e.reportingComponent) {
    for (const msg of isQualifiedName(e.reportingComponent)) {
      causes.push(invalidCause("reportingComponent", e.reportingComponent, msg));
    }
  }
  if (e.reportingInstance && e.reportingInstance.length > 128) {
    causes.push({
      reason: "FieldValueTooLong",
      message: "Too long: may not be more than 128 bytes",
      field: "reportingInstance",
    });
  }
  return causes;
}
