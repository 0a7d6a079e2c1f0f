import type * as K8s from "@kubernetes/client-node";
import { LockError, type ResourceLock, type WatchHealth, type WatchedRecord } from "../../election/lock.js";
import type { LeaderElectionRecord } from "../../election/record.js";
import { resolveKubeConfig } from "./config.js";
import { KubernetesConfigError, translateKubernetesError, type KubeVerb, type RequestTarget } from "./errors.js";
import { LeaseEventRecorder } from "./events.js";
import { leaseRaw, leaseSpecToRecord, recordToLeaseSpec, type LeaseSpecJSON } from "./mapping.js";
import { watchLease } from "./watch.js";
import type { KubernetesLockSpec } from "../url.js";

/**
 * The Kubernetes backend: a `coordination.k8s.io/v1` Lease, used exactly as client-go's
 * `resourcelock.LeaseLock` uses it, so `kubectl get lease` shows the truth and a Go program with
 * `LeaseLock` on the same Lease takes part in the same election.
 *
 * - get caches the Lease object; update PUTs the cached object with the new spec, so the API server's
 *   optimistic concurrency on `metadata.resourceVersion` makes it a compare-and-swap (409 → Conflict);
 * - the record ↔ spec mapping is client-go's (mapping.ts); a released lease is written as
 *   client-go's release writes it (the elector builds that record; see `release()` in elector.ts);
 * - each request is bounded below the renew deadline, so one hung request never eats a renew round;
 * - `became leader` / `stopped leading` events on the Lease, as client-go records them;
 * - a watch on the one Lease wakes a waiting candidate as soon as it changes.
 *
 * `@kubernetes/client-node` is loaded here, on first use, and nowhere else.
 */

export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";

/**
 * Where a hand-over request (`leader-run step-down`: the record's preferredHolder) lives on a Lease
 * without `spec.strategy`. The API server refuses `spec.preferredHolder` without a strategy (422
 * "may only be specified if `strategy` is defined"), and drops both where the CoordinatedLeaderElection
 * feature is off; a strategy would hand the Lease to that controller. An annotation is kept by every
 * API server, and a client-go peer ignores it.
 */
export const PREFERRED_HOLDER_ANNOTATION = "leader-run/preferred-holder";

/** The record as stored: preferredHolder from the spec (with a strategy) or from our annotation. */
function recordOf(lease: K8s.V1Lease): LeaderElectionRecord {
  const record = leaseSpecToRecord(lease.spec as LeaseSpecJSON | undefined);
  const requested = lease.metadata?.annotations?.[PREFERRED_HOLDER_ANNOTATION];
  if (!record.preferredHolder && requested) record.preferredHolder = requested;
  return record;
}

/** `annotations` with the hand-over request of `record` set or removed; undefined when none are left. */
function annotationsFor(record: LeaderElectionRecord, annotations: Record<string, string> | undefined): Record<string, string> | undefined {
  const out = { ...annotations };
  if (record.preferredHolder && !record.strategy) out[PREFERRED_HOLDER_ANNOTATION] = record.preferredHolder;
  else delete out[PREFERRED_HOLDER_ANNOTATION];
  return Object.keys(out).length > 0 ? out : undefined;
}
export const MANAGED_BY_VALUE = "leader-run";

export interface KubernetesLockOptions {
  /** The Lease's name (a DNS subdomain). */
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  /** Default: the service account's namespace, else the kubeconfig context's, else `default`. */
  namespace?: string;
  /** Default: in-cluster service account, else `KUBECONFIG`, else `~/.kube/config`. */
  kubeconfig?: string;
  /**
   * Labels set on create and merged into the Lease on every update (client-go's `NewWithLabels`).
   * New Leases also get `app.kubernetes.io/managed-by=leader-run`.
   */
  labels?: Record<string, string>;
  /** Warnings that must not stop the election (events forbidden, watch forbidden). Default: process.emitWarning. */
  onWarning?: (message: string) => void;
  /** `source.component` of the events. Default `leader-run`. */
  component?: string;
  /** Where KUBERNETES_SERVICE_HOST, KUBECONFIG and HOME are read. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Prefix of the service account directory; tests only. */
  inClusterRoot?: string;
}

/** client-go components use max(1s, RD/2); never more than 90% of RD, so a retry fits in the round. */
export function requestTimeoutMs(renewDeadlineMs: number): number {
  return Math.max(1, Math.floor(Math.max(Math.min(1000, renewDeadlineMs * 0.9), renewDeadlineMs / 2)));
}

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * Opens the Lease lock. Reads the configuration but does not contact the API server: the first `get`
 * does (and reports 401/403 as PermanentLockError).
 * @throws KubernetesConfigError when there is no usable configuration or the name/namespace is invalid.
 */
export async function openKubernetesLock(spec: KubernetesLockSpec, options: KubernetesLockOptions): Promise<ResourceLock> {
  if (spec.kind !== "kubernetes") throw new KubernetesConfigError(`not a Kubernetes lock: ${spec.redacted}`);
  if (options.name.length > 253 || !DNS1123_SUBDOMAIN.test(options.name)) {
    throw new KubernetesConfigError(
      `lease name ${JSON.stringify(options.name)} is not a valid Kubernetes object name: use at most 253 lower-case letters, digits, "-" and ".", starting and ending with a letter or digit`,
    );
  }
  const lib = await import("@kubernetes/client-node");
  const resolved = resolveKubeConfig(lib, options);
  if (resolved.namespace.length > 63 || !DNS1123_LABEL.test(resolved.namespace)) {
    throw new KubernetesConfigError(
      `namespace ${JSON.stringify(resolved.namespace)} is not a valid Kubernetes namespace: use at most 63 lower-case letters, digits and "-", starting and ending with a letter or digit`,
    );
  }
  return new KubernetesLeaseLock(lib, resolved.kubeConfig, {
    ...options,
    namespace: resolved.namespace,
    server: resolved.server,
    credentials: resolved.credentials,
  });
}

interface LockSettings extends KubernetesLockOptions {
  namespace: string;
  server: string;
  credentials: string;
}

export class KubernetesLeaseLock implements ResourceLock {
  private readonly coordination: K8s.CoordinationV1Api;
  private readonly timeoutMs: number;
  private readonly events: LeaseEventRecorder;
  private readonly warn: (message: string) => void;
  private readonly watches = new Set<AbortController>();
  /** The last Lease object read or written (client-go's `ll.lease`): update PUTs it, CAS on its resourceVersion. */
  private lease: K8s.V1Lease | undefined;
  private closed = false;
  private warnedWatch = false;

  constructor(
    private readonly lib: typeof K8s,
    private readonly kubeConfig: K8s.KubeConfig,
    private readonly settings: LockSettings,
  ) {
    this.coordination = kubeConfig.makeApiClient(lib.CoordinationV1Api);
    this.timeoutMs = requestTimeoutMs(settings.renewDeadlineMs);
    this.warn = settings.onWarning ?? ((message) => process.emitWarning(message, "LeaderRunWarning"));
    this.events = new LeaseEventRecorder({
      core: kubeConfig.makeApiClient(lib.CoreV1Api),
      namespace: settings.namespace,
      leaseName: settings.name,
      identity: settings.identity,
      component: settings.component ?? "leader-run",
      requestOptions: (ms) => this.requestOptions(AbortSignal.timeout(ms)),
      timeoutMs: this.timeoutMs,
      warn: this.warn,
      describe: (error) => translateKubernetesError(error, { ...this.target("create"), resource: "events" }).message,
    });
  }

  identity(): string {
    return this.settings.identity;
  }

  describe(): string {
    return `${this.settings.namespace}/${this.settings.name}`;
  }

  /** The namespace in use (after defaulting). */
  namespace(): string {
    return this.settings.namespace;
  }

  async get(signal?: AbortSignal): Promise<{ record: LeaderElectionRecord; raw: string }> {
    const lease = await this.request("get", signal, (options) =>
      this.coordination.readNamespacedLease({ name: this.settings.name, namespace: this.settings.namespace }, options),
    );
    this.lease = lease;
    const record = recordOf(lease);
    return { record, raw: leaseRaw(record, lease.metadata?.resourceVersion) };
  }

  async create(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    const body: K8s.V1Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: {
        name: this.settings.name,
        namespace: this.settings.namespace,
        labels: { [MANAGED_BY_LABEL]: MANAGED_BY_VALUE, ...this.settings.labels },
      },
      spec: this.spec(record),
    };
    const annotations = annotationsFor(record, undefined);
    if (annotations && body.metadata) body.metadata.annotations = annotations;
    this.lease = await this.request("create", signal, (options) =>
      this.coordination.createNamespacedLease({ namespace: this.settings.namespace, body }, options),
    );
  }

  async update(record: LeaderElectionRecord, signal?: AbortSignal): Promise<void> {
    const cached = this.lease;
    // client-go's message: update is a compare-and-swap against what we last saw.
    if (!cached?.metadata) throw new LockError("lease not initialized, call get or create first");
    const metadata: K8s.V1ObjectMeta = { ...cached.metadata };
    if (this.settings.labels) metadata.labels = { ...cached.metadata.labels, ...this.settings.labels };
    const annotations = annotationsFor(record, cached.metadata.annotations);
    if (annotations) metadata.annotations = annotations;
    else delete metadata.annotations;
    const body: K8s.V1Lease = { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata, spec: this.spec(record) };
    this.lease = await this.request("update", signal, (options) =>
      this.coordination.replaceNamespacedLease(
        { name: this.settings.name, namespace: this.settings.namespace, body },
        options,
      ),
    );
  }

  recordEvent(message: string): void {
    if (!this.closed) this.events.record(message, this.lease);
  }

  /**
   * A watch on the Lease. A MODIFIED event carries the Lease as stored, passed on as the record and raw
   * `get` would return; `onHealth` is `"connected"` while the watch stream is open (each one lasts a
   * minute; the reconnection starts with the current Lease, so nothing is missed in between).
   */
  watch(onChange: (seen?: WatchedRecord) => void, signal: AbortSignal, onHealth?: (health: WatchHealth) => void): void {
    if (this.closed || signal.aborted) return;
    const stop = new AbortController();
    this.watches.add(stop);
    const onAbort = (): void => stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    stop.signal.addEventListener("abort", () => {
      signal.removeEventListener("abort", onAbort);
      this.watches.delete(stop);
    });
    watchLease({
      kubeConfig: this.kubeConfig,
      server: this.settings.server,
      namespace: this.settings.namespace,
      name: this.settings.name,
      onChange: (lease) => onChange(lease === undefined ? undefined : watchedLease(lease)),
      onHealth: (connected) => {
        if (!stop.signal.aborted) onHealth?.(connected ? "connected" : "disconnected");
      },
      signal: stop.signal,
      responseTimeoutMs: this.timeoutMs,
      onForbidden: (status, message) => {
        if (this.warnedWatch) return;
        this.warnedWatch = true;
        this.warn(
          `cannot watch Lease ${this.describe()} (${status}${message ? `: ${message}` : ""}); hand-over falls back to polling every retry period. Grant "watch" on "leases" for immediate hand-over.`,
        );
      },
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of [...this.watches]) w.abort();
    await this.events.flush();
  }

  // --------------------------------------------------------------------------------------------------

  private spec(record: LeaderElectionRecord): K8s.V1LeaseSpec {
    // MicroTime fields go out as the strings we format (exactly six fraction digits): the client
    // library passes them through unchanged, whereas a Date would be printed with three, which the
    // API server refuses.
    // preferredHolder without a strategy goes into an annotation instead (see annotationsFor).
    const stored = record.strategy ? record : { ...record, preferredHolder: undefined };
    return recordToLeaseSpec(stored) as unknown as K8s.V1LeaseSpec;
  }

  private target(verb: KubeVerb): RequestTarget {
    return {
      verb,
      resource: "leases",
      namespace: this.settings.namespace,
      name: this.settings.name,
      server: this.settings.server,
      credentials: this.settings.credentials,
    };
  }

  /** Per-call options that put `signal` on the request (the library's fetch honours it). */
  private requestOptions(signal: AbortSignal): K8s.ConfigurationOptions {
    const Observable = this.lib.Observable;
    const middleware: K8s.ObservableMiddleware = {
      pre: (context) => {
        context.setSignal(signal);
        return new Observable(Promise.resolve(context));
      },
      post: (context) => new Observable(Promise.resolve(context)),
    };
    return { middleware: [middleware], middlewareMergeStrategy: "append" };
  }

  private async request<T>(
    verb: KubeVerb,
    signal: AbortSignal | undefined,
    call: (options: K8s.ConfigurationOptions) => Promise<T>,
  ): Promise<T> {
    if (this.closed) throw new LockError(`the lock on Lease ${this.describe()} is closed`);
    if (signal?.aborted) throw new LockError(`${verb} Lease ${this.describe()}: cancelled`, { cause: signal.reason });
    // One controller per request, fed by the caller's signal and our timeout, both detached afterwards
    // (AbortSignal.any on the elector's long-lived signal would accumulate a dependant per renewal).
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new Error(`no answer within ${this.timeoutMs} ms`));
    }, this.timeoutMs);
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      return await call(this.requestOptions(controller.signal));
    } catch (error) {
      throw translateKubernetesError(error, this.target(verb), timedOut);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }
}

/**
 * A watched Lease as the record and raw `get` gives (the same spec mapping and resourceVersion); none
 * when it cannot be read or names no holder (a release is read, not observed).
 */
function watchedLease(lease: unknown): WatchedRecord | undefined {
  const object = lease as { spec?: LeaseSpecJSON; metadata?: { resourceVersion?: unknown } } | null;
  if (typeof object !== "object" || object === null) return undefined;
  try {
    const record = leaseSpecToRecord(object.spec);
    if (record.holderIdentity === "") return undefined;
    const version = object.metadata?.resourceVersion;
    return { record, raw: leaseRaw(record, typeof version === "string" ? version : undefined) };
  } catch {
    return undefined;
  }
}
