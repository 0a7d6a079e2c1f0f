import {
  AlreadyExistsError,
  ConflictError,
  LockError,
  NotFoundError,
  PermanentLockError,
} from "../../election/lock.js";
import { LockConfigError } from "../errors.js";

/**
 * Turns what `@kubernetes/client-node` throws (an `ApiException` carrying the API server's Status, or a
 * node-fetch error) into the lock errors the elector and the CLI act on, with one-line messages that
 * say what to do. Nothing here imports the client library.
 */

/** Bad or missing cluster configuration (no kubeconfig, unreadable file, no current context). Exit 64. */
export class KubernetesConfigError extends LockConfigError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "KubernetesConfigError";
  }
}

/** The API server cannot be reached or did not answer in time: the elector keeps trying. */
export class KubernetesUnavailableError extends LockError {}

export type KubeVerb = "get" | "create" | "update" | "watch" | "list";

export interface RequestTarget {
  verb: KubeVerb;
  /** `leases` or `events` */
  resource: "leases" | "events";
  namespace: string;
  /** The Lease's name. */
  name: string;
  /** API server URL, for messages. */
  server: string;
  /** Where the credentials came from, e.g. `the in-cluster service account`. */
  credentials: string;
}

/** The RBAC the lock needs, spelled as a user writes it in a Role. */
export const REQUIRED_RBAC =
  'verbs ["get", "create", "update", "watch"] on resource "leases" in API group "coordination.k8s.io" (and "create" on "events")';

interface StatusBody {
  message?: string;
  reason?: string;
  details?: { kind?: string; name?: string };
}

const group = (resource: RequestTarget["resource"]): string =>
  resource === "leases" ? "leases.coordination.k8s.io" : "events";

/** The parts of an `ApiException` we use, recognised by shape so the library stays unloaded. */
function apiException(error: unknown): { code: number; status: StatusBody } | undefined {
  if (!(error instanceof Error)) return undefined;
  const e = error as Error & { code?: unknown; body?: unknown };
  if (typeof e.code !== "number" || !("body" in e)) return undefined;
  let status: StatusBody = {};
  if (typeof e.body === "string") {
    try {
      const parsed: unknown = JSON.parse(e.body);
      if (parsed && typeof parsed === "object") status = parsed as StatusBody;
    } catch {
      status = { message: e.body.slice(0, 200) };
    }
  } else if (e.body && typeof e.body === "object") {
    status = e.body as StatusBody;
  }
  return { code: e.code, status };
}

const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS|ERR_SSL/;

/**
 * @param timedOut the request's own timeout fired (as opposed to the caller cancelling it)
 */
export function translateKubernetesError(error: unknown, target: RequestTarget, timedOut = false): LockError {
  if (error instanceof LockError) return error;
  const what =
    target.resource === "events"
      ? `${target.verb} events in namespace "${target.namespace}"`
      : `${target.verb} ${group(target.resource)} "${target.name}" in namespace "${target.namespace}"`;
  const api = apiException(error);
  if (api) {
    const message = api.status.message ?? "";
    const reason = api.status.reason ?? "";
    switch (api.code) {
      case 401:
        return new PermanentLockError(
          `the Kubernetes API server ${target.server} rejected the credentials of ${target.credentials} (401 Unauthorized): the token or client certificate is missing, expired or invalid`,
          { cause: error },
        );
      case 403:
        return new PermanentLockError(
          `the Kubernetes API server forbids us to ${what} (403 Forbidden${message ? `: ${message}` : ""}); grant the identity of ${target.credentials} ${REQUIRED_RBAC}, e.g. examples/kubernetes/rbac.yaml`,
          { cause: error },
        );
      case 404:
        if (api.status.details?.kind === "namespaces") {
          return new PermanentLockError(
            `namespace "${target.namespace}" does not exist on ${target.server}; create it or choose another with --namespace`,
            { cause: error },
          );
        }
        return new NotFoundError(`Lease ${target.namespace}/${target.name} not found`, { cause: error });
      case 409:
        if (reason === "AlreadyExists" || target.verb === "create") {
          return new AlreadyExistsError(`Lease ${target.namespace}/${target.name} already exists`, { cause: error });
        }
        return new ConflictError(
          `Lease ${target.namespace}/${target.name} was changed by someone else since we read it (409 Conflict)`,
          { cause: error },
        );
      case 400:
      case 422:
        return new PermanentLockError(
          `the Kubernetes API server refused to ${what} (${api.code} ${reason || "Invalid"}): ${message || "no details"}`,
          { cause: error },
        );
      default:
        return new KubernetesUnavailableError(
          `the Kubernetes API server ${target.server} answered ${api.code}${reason ? ` ${reason}` : ""} to ${what}${message ? `: ${message}` : ""}`,
          { cause: error },
        );
    }
  }
  const e = error instanceof Error ? (error as Error & { code?: unknown; type?: unknown }) : undefined;
  if (e?.name === "AbortError" || e?.type === "aborted") {
    if (timedOut) {
      return new KubernetesUnavailableError(`no answer from the Kubernetes API server ${target.server} to ${what} in time`, {
        cause: error,
      });
    }
    return new LockError(`${what}: cancelled`, { cause: error });
  }
  const code = typeof e?.code === "string" ? e.code : "";
  if (TLS_CODES.test(code)) {
    // As for the other backends: a certificate that does not verify is configuration, not an outage.
    return new PermanentLockError(
      `cannot verify the TLS certificate of the Kubernetes API server ${target.server} (${code}); check certificate-authority in ${target.credentials}`,
      { cause: error },
    );
  }
  const detail = code || (e?.message ?? String(error));
  return new KubernetesUnavailableError(`cannot reach the Kubernetes API server ${target.server} to ${what}: ${detail}`, {
    cause: error,
  });
}
