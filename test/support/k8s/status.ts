/**
 * `metav1.Status` error bodies as the API server sends them, so the client library and leader-run see
 * exactly what a real cluster answers (code, reason, message, details).
 */

export interface StatusCause {
  reason: string;
  message: string;
  field: string;
}

export interface Status {
  kind: "Status";
  apiVersion: "v1";
  metadata: Record<string, never>;
  status: "Failure" | "Success";
  message?: string;
  reason?: string;
  details?: { name?: string; group?: string; kind?: string; uid?: string; causes?: StatusCause[] };
  code: number;
}

export class ApiError extends Error {
  constructor(readonly status: Status) {
    super(status.message);
  }
}

export interface Resource {
  /** `leases` or `events` */
  resource: string;
  /** `coordination.k8s.io` or `""` */
  group: string;
  /** `Lease` or `Event` */
  kind: string;
}

export const LEASES: Resource = { resource: "leases", group: "coordination.k8s.io", kind: "Lease" };
export const EVENTS: Resource = { resource: "events", group: "", kind: "Event" };

const qualified = (r: Resource): string => (r.group ? `${r.resource}.${r.group}` : r.resource);

function failure(code: number, reason: string, message: string, details?: Status["details"]): ApiError {
  const status: Status = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
  if (details) status.details = details;
  return new ApiError(status);
}

export function notFound(r: Resource, name: string): ApiError {
  return failure(404, "NotFound", `${qualified(r)} "${name}" not found`, { name, group: r.group || undefined, kind: r.resource });
}

export function namespaceNotFound(namespace: string): ApiError {
  return failure(404, "NotFound", `namespaces "${namespace}" not found`, { name: namespace, kind: "namespaces" });
}

export function alreadyExists(r: Resource, name: string): ApiError {
  return failure(409, "AlreadyExists", `${qualified(r)} "${name}" already exists`, {
    name,
    group: r.group || undefined,
    kind: r.resource,
  });
}

export const OPTIMISTIC_LOCK_MESSAGE = "the object has been modified; please apply your changes to the latest version and try again";

export function conflict(r: Resource, name: string, why: string = OPTIMISTIC_LOCK_MESSAGE): ApiError {
  return failure(409, "Conflict", `Operation cannot be fulfilled on ${qualified(r)} "${name}": ${why}`, {
    name,
    group: r.group || undefined,
    kind: r.resource,
  });
}

export function invalid(r: Resource, name: string, causes: StatusCause[]): ApiError {
  const list = causes.map((c) => `${c.field}: ${c.message}`);
  const joined = list.length === 1 ? list[0] : `[${list.join(", ")}]`;
  const kind = r.group ? `${r.kind}.${r.group}` : r.kind;
  return failure(422, "Invalid", `${kind} "${name}" is invalid: ${joined}`, {
    name,
    group: r.group || undefined,
    kind: r.kind,
    causes,
  });
}

export function badRequest(message: string): ApiError {
  return failure(400, "BadRequest", message);
}

export function unauthorized(): ApiError {
  return failure(401, "Unauthorized", "Unauthorized");
}

export function forbidden(r: Resource, verb: string, user: string, namespace: string, name?: string): ApiError {
  const subject = name ? `${qualified(r)} "${name}"` : qualified(r);
  return failure(
    403,
    "Forbidden",
    `${subject} is forbidden: User "${user}" cannot ${verb} resource "${r.resource}" in API group "${r.group}" in the namespace "${namespace}"`,
    { name, group: r.group || undefined, kind: r.resource },
  );
}

export function methodNotAllowed(): ApiError {
  return failure(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
}

export function internalError(message: string): ApiError {
  return failure(500, "InternalError", `Internal error occurred: ${message}`, { causes: [{ reason: "", message, field: "" }] });
}

export function serviceUnavailable(): ApiError {
  return failure(503, "ServiceUnavailable", "the server is currently unable to handle the request");
}

export function tooOld(requested: string, oldest: number): ApiError {
  return failure(410, "Expired", `too old resource version: ${requested} (${oldest})`);
}

export function success(r: Resource, name: string, uid: string): Status {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Success",
    details: { name, group: r.group || undefined, kind: r.resource, uid },
    code: 200,
  };
}
