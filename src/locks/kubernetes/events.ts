import { hostname } from "node:os";
import type * as K8s from "@kubernetes/client-node";

/**
 * The two events client-go's LeaseLock records on the Lease (`<identity> became leader`,
 * `<identity> stopped leading`, type Normal, reason LeaderElection), written as client-go's
 * `tools/record` writes a core/v1 Event, so `kubectl describe lease` and `kubectl get events` show
 * leader-run's hand-overs like any controller's.
 *
 * Best effort, never in the election's way: posted in the background, each bounded by the request
 * timeout. If events are forbidden, one warning and no further attempts.
 */

export interface LeaseEventRecorderOptions {
  core: K8s.CoreV1Api;
  namespace: string;
  leaseName: string;
  identity: string;
  /** `source.component` / `reportingComponent`. */
  component: string;
  /** Per-request options carrying the abort signal (see kubernetes.ts). */
  requestOptions: (timeoutMs: number) => K8s.ConfigurationOptions;
  timeoutMs: number;
  warn: (message: string) => void;
  /** One line saying what went wrong with a request. */
  describe: (error: unknown) => string;
}

export class LeaseEventRecorder {
  private readonly pending = new Set<Promise<void>>();
  private forbidden = false;
  private warnedFailure = false;
  private seq = 0;
  private readonly host = hostname();

  constructor(private readonly options: LeaseEventRecorderOptions) {}

  /** Records `<identity> <message>` on `lease` (the last Lease object we read or wrote, if any). */
  record(message: string, lease: K8s.V1Lease | undefined): void {
    if (this.forbidden) return;
    const o = this.options;
    const now = new Date();
    // client-go names events `<object name>.<UnixNano in hex>`; the sequence keeps two events of one
    // millisecond apart.
    const nanos = BigInt(now.getTime()) * 1_000_000n + BigInt(this.seq++ % 1_000_000);
    const involved: K8s.V1ObjectReference = {
      kind: "Lease",
      apiVersion: "coordination.k8s.io/v1",
      namespace: o.namespace,
      name: o.leaseName,
    };
    if (lease?.metadata?.uid) involved.uid = lease.metadata.uid;
    if (lease?.metadata?.resourceVersion) involved.resourceVersion = lease.metadata.resourceVersion;
    const event: K8s.CoreV1Event = {
      apiVersion: "v1",
      kind: "Event",
      metadata: { name: `${o.leaseName}.${nanos.toString(16)}`, namespace: o.namespace },
      involvedObject: involved,
      reason: "LeaderElection",
      message: `${o.identity} ${message}`,
      source: { component: o.component, host: this.host },
      firstTimestamp: now,
      lastTimestamp: now,
      count: 1,
      type: "Normal",
      reportingComponent: o.component,
      reportingInstance: this.host,
    };
    const post = o.core
      .createNamespacedEvent({ namespace: o.namespace, body: event }, o.requestOptions(o.timeoutMs))
      .then(
        () => undefined,
        (error: unknown) => this.failed(error),
      );
    this.pending.add(post);
    void post.finally(() => this.pending.delete(post));
  }

  /** Waits for events still being posted (each is bounded by its timeout). */
  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }

  private failed(error: unknown): void {
    const code = (error as { code?: unknown }).code;
    if (code === 401 || code === 403) {
      // Two events may have been in flight: one warning in all.
      if (this.forbidden) return;
      this.forbidden = true;
      this.options.warn(
        `cannot record events on Lease ${this.options.namespace}/${this.options.leaseName} (${code === 403 ? "403 Forbidden" : "401 Unauthorized"}); leader election works without them. To see "became leader" / "stopped leading" in "kubectl describe lease", grant "create" on "events".`,
      );
      return;
    }
    if (!this.warnedFailure) {
      this.warnedFailure = true;
      this.options.warn(`could not record an event (${this.options.describe(error)})`);
    }
  }
}
