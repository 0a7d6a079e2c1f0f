/**
 * A Kubernetes API server for Leases (coordination.k8s.io/v1) and Events (core/v1), served over HTTPS
 * or HTTP on loopback, for tests that drive the real `@kubernetes/client-node` against it.
 *
 * It follows Kubernetes 1.33's behaviour (see test/support/k8s/README.md for what it covers and what it
 * leaves out): namespaces; GET, LIST, WATCH, POST, PUT (with create-on-update, as the Lease registry
 * allows) and DELETE; optimistic concurrency on resourceVersion (409 Conflict), UID preconditions,
 * AlreadyExists, NotFound; the Go decoder's typing and its exact MicroTime format; Lease and ObjectMeta
 * validation (422 Invalid); unknown-field warnings or, with fieldValidation=Strict, errors; bearer-token
 * authentication (401) and per-token RBAC-like rules (403 naming user, verb and resource).
 * Faults for tests: latency, outages (hang, connection reset, 503) and one-off injected errors.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { decodeObject, DecodeError, DELETE_OPTIONS_SCHEMA, EVENT_SCHEMA, LEASE_SCHEMA } from "./k8s/decode.js";
import { formatMicroTime, formatTime, goTimeNow, type GoTime } from "./k8s/go-time.js";
import { JsonSyntaxError, parseJson } from "./k8s/json.js";
import {
  alreadyExists,
  ApiError,
  badRequest,
  conflict,
  EVENTS,
  forbidden,
  internalError,
  invalid,
  LEASES,
  methodNotAllowed,
  namespaceNotFound,
  notFound,
  serviceUnavailable,
  success,
  tooOld,
  unauthorized,
  type Resource,
  type Status,
} from "./k8s/status.js";
import { invalidCause, validateEvent, validateLeaseSpec, validateObjectMeta } from "./k8s/validation.js";

const TLS_DIR = join(dirname(fileURLToPath(import.meta.url)), "k8s", "tls");
/** CA that signed the server certificate (valid for 127.0.0.1, ::1 and localhost). */
export const TEST_CA_FILE = join(TLS_DIR, "ca.crt");

export type Verb = "get" | "list" | "watch" | "create" | "update" | "delete" | "patch";
export type Outage = "hang" | "reset" | "unavailable";

export interface Rule {
  /** `leases`, `events`, or `*` */
  resources: string[];
  /** Verbs, or `*` */
  verbs: string[];
  /** Namespaces; all when omitted. */
  namespaces?: string[];
}

export interface TokenGrant {
  /** Shown in 403 messages, e.g. `system:serviceaccount:default:leader-run`. */
  user: string;
  rules: Rule[];
}

/** The token every server accepts with full rights unless `tokens` says otherwise. */
export const ADMIN_TOKEN = "admin-token";

/** What leader-run needs: examples/kubernetes/rbac.yaml. */
export const LEADER_RUN_RULES: Rule[] = [
  { resources: ["leases"], verbs: ["get", "create", "update", "watch"] },
  { resources: ["events"], verbs: ["create"] },
];

export interface LeaseApiServerOptions {
  /** HTTPS with the fixture certificate (default), or plain HTTP. */
  tls?: boolean;
  /** Namespaces that exist; default `default` and `kube-system`. */
  namespaces?: string[];
  /** Accepted bearer tokens; default `{ [ADMIN_TOKEN]: everything }`. */
  tokens?: Record<string, TokenGrant>;
}

export interface RequestRecord {
  method: string;
  path: string;
  verb: Verb | "unknown";
  resource: string;
  namespace?: string;
  name?: string;
  user?: string;
  status: number;
  /** Request body (POST/PUT), as sent. */
  body?: string;
}

interface StoredMeta {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: number;
  creationTimestamp: GoTime;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: unknown;
  finalizers?: string[];
}

interface StoredLease {
  metadata: StoredMeta;
  spec: {
    holderIdentity?: string;
    leaseDurationSeconds?: number;
    acquireTime?: GoTime;
    renewTime?: GoTime;
    leaseTransitions?: number;
    strategy?: string;
    preferredHolder?: string;
  };
}

type WatchType = "ADDED" | "MODIFIED" | "DELETED";

interface HistoryEntry {
  rv: number;
  type: WatchType;
  namespace: string;
  lease: StoredLease;
}

interface Watcher {
  namespace: string;
  matches: (lease: StoredLease) => boolean;
  res: ServerResponse;
}

interface InjectedFailure {
  verb: Verb;
  resource: string;
  error: ApiError;
  times: number;
}

const EVENT_HISTORY = 200;

/** Go's `%#v` for the uint64 zero the server reports for a missing resourceVersion. */
const ZERO_RV = "0x0";

class HttpReply {
  constructor(
    readonly code: number,
    readonly body: unknown,
  ) {}
}

export class LeaseApiServer {
  readonly requests: RequestRecord[] = [];
  private readonly namespaces: Set<string>;
  private readonly tokens: Map<string, TokenGrant>;
  private readonly leases = new Map<string, StoredLease>();
  private readonly storedEvents: Array<Record<string, unknown>> = [];
  private readonly history: HistoryEntry[] = [];
  private readonly watchers = new Set<Watcher>();
  private readonly hanging = new Set<ServerResponse>();
  private readonly failures: InjectedFailure[] = [];
  private rv = 1000;
  private latencyMs = 0;
  private latencyVerbs: Set<Verb> | undefined;
  private outage: Outage | undefined;
  private baseUrl = "";

  private constructor(
    private readonly server: Server,
    readonly tls: boolean,
    options: LeaseApiServerOptions,
  ) {
    this.namespaces = new Set(options.namespaces ?? ["default", "kube-system"]);
    this.tokens = new Map(
      Object.entries(options.tokens ?? { [ADMIN_TOKEN]: { user: "admin", rules: [{ resources: ["*"], verbs: ["*"] }] } }),
    );
  }

  static async start(options: LeaseApiServerOptions = {}): Promise<LeaseApiServer> {
    const tls = options.tls ?? true;
    const holder: { api?: LeaseApiServer } = {};
    const handler = (req: IncomingMessage, res: ServerResponse): void => {
      void holder.api?.handle(req, res);
    };
    const server = tls
      ? createHttpsServer(
          { cert: readFileSync(join(TLS_DIR, "server.crt")), key: readFileSync(join(TLS_DIR, "server.key")) },
          handler,
        )
      : createHttpServer(handler);
    const api = new LeaseApiServer(server, tls, options);
    holder.api = api;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    api.baseUrl = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
    return api;
  }

  get url(): string {
    return this.baseUrl;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** Ends every stream and connection and stops listening. */
  async close(): Promise<void> {
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    for (const res of this.hanging) res.destroy();
    this.hanging.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- test controls -------------------------------------------------------------------------------

  addToken(token: string, grant: TokenGrant): void {
    this.tokens.set(token, grant);
  }

  addNamespace(namespace: string): void {
    this.namespaces.add(namespace);
  }

  /** Every request (of `verbs`, default all) waits `ms` before the server looks at it. */
  setLatency(ms: number, verbs?: Verb[]): void {
    this.latencyMs = ms;
    this.latencyVerbs = verbs ? new Set(verbs) : undefined;
  }

  /**
   * `hang`: requests are never answered; `reset`: connections are reset (open watches too);
   * `unavailable`: 503. `undefined` ends the outage (requests left hanging stay hanging).
   */
  setOutage(mode: Outage | undefined): void {
    this.outage = mode;
    if (mode === "reset" || mode === "unavailable") {
      for (const w of this.watchers) w.res.destroy();
      this.watchers.clear();
    }
  }

  /** The next `times` requests of `verb` on `resource` fail with `status` (500 unless given). */
  injectFailure(verb: Verb, options: { resource?: string; code?: number; times?: number } = {}): void {
    const code = options.code ?? 500;
    const error =
      code === 503 ? serviceUnavailable() : code === 500 ? internalError("injected by the test") : badRequest(`injected ${code}`);
    if (code !== 500 && code !== 503) error.status.code = code;
    this.failures.push({ verb, resource: options.resource ?? "leases", error, times: options.times ?? 1 });
  }

  /** The Lease as the server would serve it, or undefined. */
  getLease(namespace: string, name: string): Record<string, unknown> | undefined {
    const lease = this.leases.get(`${namespace}/${name}`);
    return lease ? this.serve(lease) : undefined;
  }

  /** Every Lease in `namespace`, as served. */
  listLeases(namespace: string): Array<Record<string, unknown>> {
    return [...this.leases.values()].filter((l) => l.metadata.namespace === namespace).map((l) => this.serve(l));
  }

  /** Events created so far, as served. */
  events(namespace?: string): Array<Record<string, unknown>> {
    return this.storedEvents.filter((e) => namespace === undefined || (e.metadata as { namespace: string }).namespace === namespace);
  }

  /**
   * Writes a Lease as another client would (e.g. a client-go fixture), through the same decoding and
   * validation as a request: POST when absent, PUT (unconditional on the stored version) when present.
   */
  writeLease(namespace: string, body: Record<string, unknown>): Record<string, unknown> {
    const meta = (body.metadata ?? {}) as Record<string, unknown>;
    const name = String(meta.name ?? "");
    const existing = this.leases.get(`${namespace}/${name}`);
    const text = JSON.stringify(
      existing
        ? { ...body, metadata: { ...meta, resourceVersion: String(existing.metadata.resourceVersion), uid: existing.metadata.uid } }
        : body,
    );
    const reply = existing ? this.updateLease(namespace, name, text, new URLSearchParams(), []) : this.createLease(namespace, text, new URLSearchParams(), []);
    return reply.body as Record<string, unknown>;
  }

  deleteLease(namespace: string, name: string): void {
    const lease = this.leases.get(`${namespace}/${name}`);
    if (!lease) return;
    this.leases.delete(`${namespace}/${name}`);
    this.record("DELETED", { ...lease, metadata: { ...lease.metadata, resourceVersion: ++this.rv } });
  }

  /**
   * Writes a kubeconfig for this server to `path`. `token: null` writes a user without credentials;
   * `insecure` (default: true for HTTP, which `@kubernetes/client-node` otherwise refuses) skips TLS
   * verification instead of naming the CA.
   */
  writeKubeconfig(path: string, options: { token?: string | null; namespace?: string; insecure?: boolean } = {}): string {
    const token = options.token === undefined ? ADMIN_TOKEN : options.token;
    const insecure = options.insecure ?? !this.tls;
    const cluster: Record<string, unknown> = { server: this.url };
    if (insecure) cluster["insecure-skip-tls-verify"] = true;
    else if (this.tls) cluster["certificate-authority"] = TEST_CA_FILE;
    const context: Record<string, unknown> = { cluster: "test", user: "test" };
    if (options.namespace) context.namespace = options.namespace;
    const config = {
      apiVersion: "v1",
      kind: "Config",
      clusters: [{ name: "test", cluster }],
      users: [{ name: "test", user: token === null ? {} : { token } }],
      contexts: [{ name: "test", context }],
      "current-context": "test",
    };
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, JSON.stringify(config, null, 2));
    return path;
  }

  /**
   * Lays out a service account volume under `root` (as `/var/run/secrets/kubernetes.io/serviceaccount`
   * is in a pod) and returns the environment a pod gets; HTTPS only, as in a cluster.
   */
  writeServiceAccount(root: string, options: { token?: string; namespace?: string } = {}): Record<string, string> {
    if (!this.tls) throw new Error("in-cluster configuration needs the HTTPS server");
    const dir = join(root, "var/run/secrets/kubernetes.io/serviceaccount");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "token"), options.token ?? ADMIN_TOKEN);
    writeFileSync(join(dir, "ca.crt"), readFileSync(TEST_CA_FILE));
    writeFileSync(join(dir, "namespace"), options.namespace ?? "default");
    return { KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(this.port) };
  }

  // ---- request handling ----------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const route = this.route(req.method ?? "GET", url);
    const entry: RequestRecord = {
      method: req.method ?? "GET",
      path: url.pathname + url.search,
      verb: route?.verb ?? "unknown",
      resource: route?.resource.resource ?? "",
      namespace: route?.namespace,
      name: route?.name,
      status: 0,
    };
    this.requests.push(entry);
    const body = await readBody(req);
    if (body !== "") entry.body = body;

    if (this.latencyMs > 0 && (!this.latencyVerbs || (route && this.latencyVerbs.has(route.verb)))) {
      await new Promise((r) => setTimeout(r, this.latencyMs));
    }
    if (this.outage === "reset") {
      req.socket.destroy();
      return;
    }
    if (this.outage === "hang") {
      this.hanging.add(res);
      res.on("close", () => this.hanging.delete(res));
      return;
    }

    const send = (code: number, payload: unknown, warnings: string[] = []): void => {
      entry.status = code;
      if (warnings.length > 0) res.setHeader("Warning", warnings.map((w) => `299 - ${JSON.stringify(w)}`));
      res.writeHead(code, { "Content-Type": "application/json", "Audit-Id": randomUUID() });
      res.end(JSON.stringify(payload));
    };
    const fail = (error: ApiError): void => send(error.status.code, error.status);

    try {
      if (this.outage === "unavailable") throw serviceUnavailable();
      const grant = this.authenticate(req);
      if (!grant) throw unauthorized();
      entry.user = grant.user;
      if (!route) {
        throw new ApiError({
          kind: "Status",
          apiVersion: "v1",
          metadata: {},
          status: "Failure",
          message: "the server could not find the requested resource",
          reason: "NotFound",
          details: {},
          code: 404,
        });
      }
      if (!allowed(grant, route.verb, route.resource.resource, route.namespace)) {
        throw forbidden(route.resource, route.verb, grant.user, route.namespace, route.name);
      }
      const injected = this.failures.find((f) => f.verb === route.verb && f.resource === route.resource.resource);
      if (injected) {
        if (--injected.times <= 0) this.failures.splice(this.failures.indexOf(injected), 1);
        throw injected.error;
      }
      const warnings: string[] = [];
      if (route.verb === "watch") {
        this.watch(route.namespace, url.searchParams, res, entry);
        return;
      }
      const reply = this.dispatch(route, url.searchParams, body, warnings);
      send(reply.code, reply.body, warnings);
    } catch (error) {
      if (error instanceof ApiError) fail(error);
      else fail(internalError(error instanceof Error ? error.message : String(error)));
    }
  }

  private authenticate(req: IncomingMessage): TokenGrant | undefined {
    const header = req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m ? this.tokens.get(m[1] as string) : undefined;
  }

  private route(
    method: string,
    url: URL,
  ): { verb: Verb; resource: Resource; namespace: string; name?: string } | undefined {
    const lease = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?\/?$/.exec(url.pathname);
    const event = /^\/api\/v1\/namespaces\/([^/]+)\/events(?:\/([^/]+))?\/?$/.exec(url.pathname);
    const m = lease ?? event;
    if (!m) return undefined;
    const resource = lease ? LEASES : EVENTS;
    const namespace = decodeURIComponent(m[1] as string);
    const name = m[2] === undefined ? undefined : decodeURIComponent(m[2]);
    const watch = ["true", "1"].includes(url.searchParams.get("watch") ?? "");
    let verb: Verb;
    switch (method) {
      case "GET":
        verb = name !== undefined ? "get" : watch ? "watch" : "list";
        break;
      case "POST":
        verb = "create";
        break;
      case "PUT":
        verb = "update";
        break;
      case "DELETE":
        verb = "delete";
        break;
      case "PATCH":
        verb = "patch";
        break;
      default:
        return undefined;
    }
    return { verb, resource, namespace, name };
  }

  private dispatch(
    route: { verb: Verb; resource: Resource; namespace: string; name?: string },
    query: URLSearchParams,
    body: string,
    warnings: string[],
  ): HttpReply {
    const { verb, namespace, name } = route;
    if (route.resource === EVENTS) {
      if (verb === "create" && name === undefined) return this.createEvent(namespace, body, query, warnings);
      if (verb === "list") {
        return new HttpReply(200, {
          kind: "EventList",
          apiVersion: "v1",
          metadata: { resourceVersion: String(this.rv) },
          items: this.events(namespace),
        });
      }
      throw methodNotAllowed();
    }
    switch (verb) {
      case "get": {
        const lease = this.leases.get(`${namespace}/${name}`);
        if (!lease) throw notFound(LEASES, name as string);
        return new HttpReply(200, this.serve(lease));
      }
      case "list":
        return new HttpReply(200, this.list(namespace, query));
      case "create":
        if (name !== undefined) throw methodNotAllowed();
        return this.createLease(namespace, body, query, warnings);
      case "update":
        return this.updateLease(namespace, name as string, body, query, warnings);
      case "delete":
        return this.deleteRequest(namespace, name as string, body);
      default:
        throw methodNotAllowed();
    }
  }

  // ---- leases --------------------------------------------------------------------------------------

  private decodeLease(body: string, query: URLSearchParams, warnings: string[]): Record<string, unknown> {
    return decodeBody(body, LEASE_SCHEMA, "Lease", "coordination.k8s.io/v1", query, warnings);
  }

  private createLease(namespace: string, body: string, query: URLSearchParams, warnings: string[]): HttpReply {
    const obj = this.decodeLease(body, query, warnings);
    const meta = (obj.metadata ?? {}) as Record<string, unknown>;
    if (meta.namespace !== undefined && meta.namespace !== "" && meta.namespace !== namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    if (meta.resourceVersion !== undefined && meta.resourceVersion !== "" && meta.resourceVersion !== "0") {
      throw internalError("resourceVersion should not be set on objects to be created");
    }
    let name = (meta.name as string | undefined) ?? "";
    if (name === "" && typeof meta.generateName === "string" && meta.generateName !== "") {
      name = meta.generateName + randomBytes(3).toString("hex").slice(0, 5);
    }
    const lease = this.toStored(obj, name, namespace, randomUUID(), goTimeNow());
    const causes = [
      ...validateObjectMeta({ ...lease.metadata, generateName: meta.generateName as string | undefined }),
      ...validateLeaseSpec(lease.spec),
    ];
    if (causes.length > 0) throw invalid(LEASES, name, causes);
    if (!this.namespaces.has(namespace)) throw namespaceNotFound(namespace);
    if (this.leases.has(`${namespace}/${name}`)) throw alreadyExists(LEASES, name);
    lease.metadata.resourceVersion = ++this.rv;
    this.leases.set(`${namespace}/${name}`, lease);
    this.record("ADDED", lease);
    return new HttpReply(201, this.serve(lease));
  }

  private updateLease(namespace: string, name: string, body: string, query: URLSearchParams, warnings: string[]): HttpReply {
    const obj = this.decodeLease(body, query, warnings);
    const meta = (obj.metadata ?? {}) as Record<string, unknown>;
    const objName = (meta.name as string | undefined) ?? "";
    if (objName !== name) {
      throw badRequest(`the name of the object (${objName}) does not match the name on the URL (${name})`);
    }
    if (meta.namespace !== undefined && meta.namespace !== "" && meta.namespace !== namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    const uid = (meta.uid as string | undefined) ?? "";
    const existing = this.leases.get(`${namespace}/${name}`);
    // A PUT carrying a UID is conditional on it (rest.defaultUpdatedObjectInfo.Preconditions).
    if (uid !== "" && uid !== (existing?.metadata.uid ?? "")) {
      throw conflict(LEASES, name, `Precondition failed: UID in precondition: ${uid}, UID in object meta: ${existing?.metadata.uid ?? ""}`);
    }
    const rvText = (meta.resourceVersion as string | undefined) ?? "";
    let newRv = 0;
    if (rvText !== "" && rvText !== "0") {
      if (!/^\d+$/.test(rvText)) {
        throw invalid(LEASES, name, [
          invalidCause("metadata.resourceVersion", rvText, `strconv.ParseUint: parsing ${JSON.stringify(rvText)}: invalid syntax`),
        ]);
      }
      newRv = Number(rvText);
    }

    if (!existing) {
      // Leases allow create-on-update (leaseStrategy.AllowCreateOnUpdate).
      const lease = this.toStored(obj, name, namespace, randomUUID(), goTimeNow());
      const causes = [...validateObjectMeta(lease.metadata), ...validateLeaseSpec(lease.spec)];
      if (causes.length > 0) throw invalid(LEASES, name, causes);
      if (!this.namespaces.has(namespace)) throw namespaceNotFound(namespace);
      lease.metadata.resourceVersion = ++this.rv;
      this.leases.set(`${namespace}/${name}`, lease);
      this.record("ADDED", lease);
      return new HttpReply(201, this.serve(lease));
    }

    if (newRv === 0) {
      throw invalid({ ...LEASES, kind: "leases" }, name, [
        { reason: "FieldValueInvalid", message: `Invalid value: ${ZERO_RV}: must be specified for an update`, field: "metadata.resourceVersion" },
      ]);
    }
    if (newRv !== existing.metadata.resourceVersion) throw conflict(LEASES, name);
    // rest.BeforeUpdate: uid, creationTimestamp and generation come from the stored object.
    const lease = this.toStored(obj, name, namespace, existing.metadata.uid, existing.metadata.creationTimestamp);
    const causes = [...validateObjectMeta(lease.metadata), ...validateLeaseSpec(lease.spec)];
    if (causes.length > 0) throw invalid(LEASES, name, causes);
    lease.metadata.resourceVersion = existing.metadata.resourceVersion;
    // An update that changes nothing is a no-op: same resourceVersion, no watch event.
    if (JSON.stringify(this.serve(lease)) === JSON.stringify(this.serve(existing))) {
      return new HttpReply(200, this.serve(existing));
    }
    lease.metadata.resourceVersion = ++this.rv;
    this.leases.set(`${namespace}/${name}`, lease);
    this.record("MODIFIED", lease);
    return new HttpReply(200, this.serve(lease));
  }

  private deleteRequest(namespace: string, name: string, body: string): HttpReply {
    let pre: { uid?: string; resourceVersion?: string } = {};
    if (body.trim() !== "") {
      const opts = decodeBody(body, DELETE_OPTIONS_SCHEMA, "DeleteOptions", "", new URLSearchParams(), []);
      pre = (opts.preconditions ?? {}) as typeof pre;
    }
    const lease = this.leases.get(`${namespace}/${name}`);
    if (!lease) throw notFound(LEASES, name);
    if (pre.uid !== undefined && pre.uid !== lease.metadata.uid) {
      throw conflict(LEASES, name, `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${lease.metadata.uid}`);
    }
    if (pre.resourceVersion !== undefined && pre.resourceVersion !== String(lease.metadata.resourceVersion)) {
      throw conflict(
        LEASES,
        name,
        `Precondition failed: ResourceVersion in precondition: ${pre.resourceVersion}, ResourceVersion in object meta: ${lease.metadata.resourceVersion}`,
      );
    }
    this.deleteLease(namespace, name);
    return new HttpReply(200, success(LEASES, name, lease.metadata.uid));
  }

  private toStored(obj: Record<string, unknown>, name: string, namespace: string, uid: string, created: GoTime): StoredLease {
    const meta = (obj.metadata ?? {}) as Record<string, unknown>;
    const spec = (obj.spec ?? {}) as StoredLease["spec"];
    const metadata: StoredMeta = { name, namespace, uid, resourceVersion: 0, creationTimestamp: created };
    if (meta.labels && Object.keys(meta.labels).length > 0) metadata.labels = meta.labels as Record<string, string>;
    if (meta.annotations && Object.keys(meta.annotations).length > 0) metadata.annotations = meta.annotations as Record<string, string>;
    if (Array.isArray(meta.ownerReferences) && meta.ownerReferences.length > 0) metadata.ownerReferences = meta.ownerReferences;
    if (Array.isArray(meta.finalizers) && meta.finalizers.length > 0) metadata.finalizers = meta.finalizers as string[];
    return { metadata, spec: { ...spec } };
  }

  /** JSON as the server prints a Lease: field order of the Go types, MicroTime in UTC with 6 digits. */
  private serve(lease: StoredLease): Record<string, unknown> {
    const m = lease.metadata;
    const metadata: Record<string, unknown> = {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: String(m.resourceVersion),
      creationTimestamp: formatTime(m.creationTimestamp),
    };
    if (m.labels) metadata.labels = m.labels;
    if (m.annotations) metadata.annotations = m.annotations;
    if (m.ownerReferences) metadata.ownerReferences = m.ownerReferences;
    if (m.finalizers) metadata.finalizers = m.finalizers;
    const s = lease.spec;
    const spec: Record<string, unknown> = {};
    if (s.holderIdentity !== undefined) spec.holderIdentity = s.holderIdentity;
    if (s.leaseDurationSeconds !== undefined) spec.leaseDurationSeconds = s.leaseDurationSeconds;
    if (s.acquireTime !== undefined) spec.acquireTime = formatMicroTime(s.acquireTime);
    if (s.renewTime !== undefined) spec.renewTime = formatMicroTime(s.renewTime);
    if (s.leaseTransitions !== undefined) spec.leaseTransitions = s.leaseTransitions;
    if (s.strategy !== undefined) spec.strategy = s.strategy;
    if (s.preferredHolder !== undefined) spec.preferredHolder = s.preferredHolder;
    return { kind: "Lease", apiVersion: "coordination.k8s.io/v1", metadata, spec };
  }

  private list(namespace: string, query: URLSearchParams): Record<string, unknown> {
    const matches = selector(query);
    const items = [...this.leases.values()]
      .filter((l) => l.metadata.namespace === namespace && matches(l))
      .sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))
      .map((l) => {
        const { kind: _k, apiVersion: _a, ...item } = this.serve(l);
        return item;
      });
    return { kind: "LeaseList", apiVersion: "coordination.k8s.io/v1", metadata: { resourceVersion: String(this.rv) }, items };
  }

  // ---- watch ---------------------------------------------------------------------------------------

  private record(type: WatchType, lease: StoredLease): void {
    const entry: HistoryEntry = { rv: lease.metadata.resourceVersion, type, namespace: lease.metadata.namespace, lease };
    this.history.push(entry);
    if (this.history.length > EVENT_HISTORY) this.history.shift();
    for (const w of this.watchers) {
      if (w.namespace === entry.namespace && w.matches(lease)) this.sendEvent(w.res, type, lease);
    }
  }

  private sendEvent(res: ServerResponse, type: WatchType, lease: StoredLease): void {
    res.write(`${JSON.stringify({ type, object: this.serve(lease) })}\n`);
  }

  private watch(namespace: string, query: URLSearchParams, res: ServerResponse, entry: RequestRecord): void {
    const matches = selector(query);
    const rvParam = query.get("resourceVersion") ?? "";
    entry.status = 200;
    res.writeHead(200, { "Content-Type": "application/json", "Transfer-Encoding": "chunked" });
    res.flushHeaders();
    if (rvParam === "" || rvParam === "0") {
      // "Start at most recent": synthetic ADDED events for what exists now.
      for (const lease of this.leases.values()) {
        if (lease.metadata.namespace === namespace && matches(lease)) this.sendEvent(res, "ADDED", lease);
      }
    } else {
      const since = Number(rvParam);
      const oldest = this.history[0]?.rv ?? this.rv + 1;
      if (!Number.isSafeInteger(since) || since < oldest - 1) {
        res.end(`${JSON.stringify({ type: "ERROR", object: tooOld(rvParam, oldest).status })}\n`);
        return;
      }
      for (const h of this.history) {
        if (h.rv > since && h.namespace === namespace && matches(h.lease)) this.sendEvent(res, h.type, h.lease);
      }
    }
    const watcher: Watcher = { namespace, matches, res };
    this.watchers.add(watcher);
    const timeout = Number(query.get("timeoutSeconds") ?? "0");
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    res.on("close", () => {
      if (timer) clearTimeout(timer);
      this.watchers.delete(watcher);
    });
  }

  // ---- events --------------------------------------------------------------------------------------

  private createEvent(namespace: string, body: string, query: URLSearchParams, warnings: string[]): HttpReply {
    const obj = decodeBody(body, EVENT_SCHEMA, "Event", "v1", query, warnings);
    const meta = (obj.metadata ?? {}) as Record<string, unknown>;
    if (meta.namespace !== undefined && meta.namespace !== "" && meta.namespace !== namespace) {
      throw badRequest("the namespace of the provided object does not match the namespace sent on the request");
    }
    const name = (meta.name as string | undefined) ?? "";
    const involved = (obj.involvedObject ?? {}) as Record<string, unknown>;
    const causes = [
      ...validateObjectMeta({ name, namespace }),
      ...validateEvent({
        namespace,
        involvedObjectNamespace: involved.namespace as string | undefined,
        reportingComponent: obj.reportingComponent as string | undefined,
        reportingInstance: obj.reportingInstance as string | undefined,
        hasEventTime: obj.eventTime !== undefined,
      }),
    ];
    if (causes.length > 0) throw invalid(EVENTS, name, causes);
    if (!this.namespaces.has(namespace)) throw namespaceNotFound(namespace);
    if (this.storedEvents.some((e) => (e.metadata as { name: string; namespace: string }).name === name && (e.metadata as { namespace: string }).namespace === namespace)) {
      throw alreadyExists(EVENTS, name);
    }
    const served: Record<string, unknown> = {
      kind: "Event",
      apiVersion: "v1",
      ...obj,
      metadata: { name, namespace, uid: randomUUID(), resourceVersion: String(++this.rv), creationTimestamp: formatTime(goTimeNow()) },
    };
    for (const key of ["firstTimestamp", "lastTimestamp"] as const) {
      if (obj[key] !== undefined) served[key] = formatTime(obj[key] as GoTime);
    }
    if (obj.eventTime !== undefined) served.eventTime = formatMicroTime(obj.eventTime as GoTime);
    this.storedEvents.push(served);
    return new HttpReply(201, served);
  }
}

export function startLeaseApiServer(options?: LeaseApiServerOptions): Promise<LeaseApiServer> {
  return LeaseApiServer.start(options);
}

// ---- helpers -----------------------------------------------------------------------------------------

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", () => resolve(""));
  });
}

function allowed(grant: TokenGrant, verb: Verb, resource: string, namespace: string): boolean {
  return grant.rules.some(
    (r) =>
      (r.resources.includes("*") || r.resources.includes(resource)) &&
      (r.verbs.includes("*") || r.verbs.includes(verb)) &&
      (r.namespaces === undefined || r.namespaces.includes(namespace)),
  );
}

/**
 * Decodes a request body like the server: Go typing, apiVersion/kind checked against the endpoint,
 * unknown/duplicate fields warned about (default) or rejected (`fieldValidation=Strict`).
 */
function decodeBody(
  body: string,
  schema: typeof LEASE_SCHEMA,
  kind: string,
  apiVersion: string,
  query: URLSearchParams,
  warnings: string[],
): Record<string, unknown> {
  const cannotHandle = (why: string): ApiError =>
    badRequest(`${kind} in version "${apiVersion.split("/").pop() ?? ""}" cannot be handled as a ${kind}: ${why}`);
  let decoded;
  try {
    decoded = decodeObject(parseJson(body), schema);
  } catch (error) {
    if (error instanceof JsonSyntaxError || error instanceof DecodeError) throw cannotHandle(error.message);
    throw error;
  }
  const obj = decoded.value;
  if (apiVersion !== "") {
    if (obj.apiVersion !== undefined && obj.apiVersion !== "" && obj.apiVersion !== apiVersion) {
      throw badRequest(`the API version in the data (${String(obj.apiVersion)}) does not match the expected API version (${apiVersion})`);
    }
    if (obj.kind !== undefined && obj.kind !== "" && obj.kind !== kind) {
      throw badRequest(`the kind in the data (${String(obj.kind)}) does not match the expected kind (${kind})`);
    }
  }
  const problems = [
    ...decoded.unknownFields.map((f) => `unknown field ${JSON.stringify(f)}`),
    ...decoded.duplicateFields.map((f) => `duplicate field ${JSON.stringify(f)}`),
  ];
  const mode = query.get("fieldValidation") ?? "Warn";
  if (!["Ignore", "Warn", "Strict"].includes(mode)) {
    throw badRequest(`fieldValidation must be one of "Ignore", "Warn", "Strict", got ${JSON.stringify(mode)}`);
  }
  if (problems.length > 0) {
    if (mode === "Strict") throw badRequest(`strict decoding error: ${problems.join(", ")}`);
    if (mode === "Warn") warnings.push(...problems);
  }
  return obj;
}

/** `fieldSelector` (metadata.name / metadata.namespace) and equality-based `labelSelector`. */
function selector(query: URLSearchParams): (lease: StoredLease) => boolean {
  const tests: Array<(lease: StoredLease) => boolean> = [];
  for (const term of (query.get("fieldSelector") ?? "").split(",").filter(Boolean)) {
    const m = /^([^!=]+)(==|=|!=)(.*)$/.exec(term);
    if (!m) throw badRequest(`invalid field selector: ${JSON.stringify(term)}`);
    const [, field, op, value] = m as unknown as [string, string, string, string];
    if (field !== "metadata.name" && field !== "metadata.namespace") {
      throw badRequest(`field label not supported: ${field}`);
    }
    const get = (l: StoredLease): string => (field === "metadata.name" ? l.metadata.name : l.metadata.namespace);
    tests.push(op === "!=" ? (l) => get(l) !== value : (l) => get(l) === value);
  }
  for (const term of (query.get("labelSelector") ?? "").split(",").filter(Boolean)) {
    const m = /^(!?)([^!=]+?)(?:(==|=|!=)(.*))?$/.exec(term);
    if (!m) throw badRequest(`unable to parse requirement: ${JSON.stringify(term)}`);
    const [, not, key, op, value] = m as unknown as [string, string, string, string | undefined, string | undefined];
    const labels = (l: StoredLease): Record<string, string> => l.metadata.labels ?? {};
    if (op === undefined) tests.push(not ? (l) => !(key in labels(l)) : (l) => key in labels(l));
    else if (op === "!=") tests.push((l) => labels(l)[key] !== value);
    else tests.push((l) => labels(l)[key] === value);
  }
  return (lease) => tests.every((t) => t(lease));
}

export type { Status };
