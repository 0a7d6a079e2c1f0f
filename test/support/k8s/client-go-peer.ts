/**
 * A stand-in for a Go program that uses client-go's `leaderelection` with `resourcelock.LeaseLock`,
 * written independently of leader-run's code from client-go's documented behaviour
 * (/work/shared/research/client-go-semantics.md §2-3): its own HTTP, its own Lease (de)serialisation
 * (MicroTime with real microseconds, as Go's clock gives them; `creationTimestamp: null` as Go marshals
 * an empty ObjectMeta), client-go's tryAcquireOrRenew with the fast path, and client-go's raw record
 * comparison at whole-second granularity (metav1.Time).
 *
 * Used to prove a client-go peer and leader-run share one election without overlapping.
 */
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { ADMIN_TOKEN, TEST_CA_FILE, type LeaseApiServer } from "../lease-api-server.js";
import { parseGoTime, RFC3339_MICRO } from "./go-time.js";

export interface GoRecord {
  holderIdentity: string;
  leaseDurationSeconds: number;
  /** Epoch microseconds, 0 for the zero time. */
  acquireTime: number;
  renewTime: number;
  leaderTransitions: number;
}

export interface ClientGoPeerOptions {
  server: LeaseApiServer;
  token?: string;
  namespace: string;
  name: string;
  identity: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  releaseOnCancel?: boolean;
}

export interface Interval {
  start: number;
  end?: number;
}

class HttpStatusError extends Error {
  constructor(readonly status: number) {
    super(`HTTP ${status}`);
  }
}

/** Go's `time.Now()` in microseconds: wall clock with sub-millisecond digits. */
function nowMicros(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

function microTime(us: number): string | null {
  if (us === 0) return null;
  const base = new Date(Math.floor(us / 1000)).toISOString().slice(0, 19);
  return `${base}.${String(us % 1_000_000).padStart(6, "0")}Z`;
}

/** metav1.Time JSON: whole seconds. */
function metaTime(us: number): string | null {
  if (us === 0) return null;
  return `${new Date(Math.floor(us / 1000)).toISOString().slice(0, 19)}Z`;
}

export class ClientGoPeer {
  readonly intervals: Interval[] = [];
  private lease: Record<string, unknown> | undefined;
  private observed: GoRecord = { holderIdentity: "", leaseDurationSeconds: 0, acquireTime: 0, renewTime: 0, leaderTransitions: 0 };
  private observedRaw = "";
  private observedTime = Number.NEGATIVE_INFINITY;
  private readonly ca: Buffer | undefined;

  constructor(private readonly o: ClientGoPeerOptions) {
    this.ca = o.server.tls ? readFileSync(TEST_CA_FILE) : undefined;
  }

  isLeader(): boolean {
    return this.observed.holderIdentity === this.o.identity;
  }

  /** The last record this peer observed, as client-go's `getObservedRecord`. */
  observedRecord(): GoRecord {
    return { ...this.observed };
  }

  /** client-go `Run`: acquire, renew until a round fails or `signal` aborts, optionally release. */
  async run(signal: AbortSignal): Promise<void> {
    const { retryPeriodMs: rp, renewDeadlineMs: rd } = this.o;
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew(signal)) break;
      await sleep(rp * (1 + Math.random() * 1.2), signal);
    }
    if (signal.aborted) return;
    const interval: Interval = { start: performance.now() };
    this.intervals.push(interval);
    renew: while (!signal.aborted) {
      const deadline = performance.now() + rd;
      let ok = false;
      while (!signal.aborted && performance.now() < deadline) {
        const round = AbortSignal.any([signal, AbortSignal.timeout(Math.max(1, Math.ceil(deadline - performance.now())))]);
        ok = await this.tryAcquireOrRenew(round);
        if (ok) break;
        await sleep(Math.min(rp, Math.max(0, deadline - performance.now())), signal);
      }
      if (!ok) break renew;
      await sleep(rp, signal);
    }
    // Models a Go program whose work stops when its context is cancelled, before the release.
    interval.end = performance.now();
    if (this.o.releaseOnCancel) await this.release();
  }

  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const now = performance.now();
    const wall = nowMicros();
    const desired: GoRecord = {
      holderIdentity: this.o.identity,
      leaseDurationSeconds: Math.trunc(this.o.leaseDurationMs / 1000),
      acquireTime: wall,
      renewTime: wall,
      leaderTransitions: 0,
    };
    if (this.isLeader() && this.isLeaseValid(now)) {
      desired.acquireTime = this.observed.acquireTime;
      desired.leaderTransitions = this.observed.leaderTransitions;
      try {
        await this.update(desired, signal);
        this.setObserved(desired);
        return true;
      } catch {
        // slow path
      }
    }
    let fetched: { record: GoRecord; raw: string };
    try {
      fetched = await this.get(signal);
    } catch (error) {
      if (!(error instanceof HttpStatusError && error.status === 404)) return false;
      try {
        await this.create(desired, signal);
      } catch {
        return false;
      }
      this.setObserved(desired);
      return true;
    }
    if (fetched.raw !== this.observedRaw) {
      this.observed = fetched.record;
      this.observedRaw = fetched.raw;
      this.observedTime = performance.now();
    }
    if (fetched.record.holderIdentity !== "" && this.isLeaseValid(now) && !this.isLeader()) return false;
    if (this.isLeader()) {
      desired.acquireTime = this.observed.acquireTime;
      desired.leaderTransitions = this.observed.leaderTransitions;
    } else {
      desired.leaderTransitions = this.observed.leaderTransitions + 1;
    }
    try {
      await this.update(desired, signal);
    } catch {
      return false;
    }
    this.setObserved(desired);
    return true;
  }

  private async release(): Promise<void> {
    const signal = AbortSignal.timeout(this.o.renewDeadlineMs);
    for (;;) {
      try {
        await this.get(signal);
      } catch {
        return;
      }
      if (!this.isLeader()) return;
      const now = nowMicros();
      const released: GoRecord = {
        holderIdentity: "",
        leaseDurationSeconds: 1,
        acquireTime: now,
        renewTime: now,
        leaderTransitions: this.observed.leaderTransitions,
      };
      try {
        await this.update(released, signal);
        this.setObserved(released);
        return;
      } catch (error) {
        if (!(error instanceof HttpStatusError && error.status === 409) || signal.aborted) return;
      }
    }
  }

  private setObserved(record: GoRecord): void {
    this.observed = record;
    this.observedTime = performance.now();
  }

  private isLeaseValid(now: number): boolean {
    return this.observedTime + this.observed.leaseDurationSeconds * 1000 > now;
  }

  // ---- LeaseLock -------------------------------------------------------------------------------------

  private path(name?: string): string {
    const base = `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`;
    return name === undefined ? base : `${base}/${name}`;
  }

  private async get(signal: AbortSignal): Promise<{ record: GoRecord; raw: string }> {
    const lease = await this.http("GET", this.path(this.o.name), undefined, signal);
    this.lease = lease;
    const spec = (lease.spec ?? {}) as Record<string, unknown>;
    // client-go decodes MicroTime with time.Parse(RFC3339Micro): strict, like the server.
    const time = (v: unknown): number => {
      if (typeof v !== "string") return 0;
      const t = parseGoTime(v, RFC3339_MICRO);
      return t.seconds * 1_000_000 + Math.floor(t.nanos / 1000);
    };
    const record: GoRecord = {
      holderIdentity: typeof spec.holderIdentity === "string" ? spec.holderIdentity : "",
      leaseDurationSeconds: typeof spec.leaseDurationSeconds === "number" ? spec.leaseDurationSeconds : 0,
      acquireTime: time(spec.acquireTime),
      renewTime: time(spec.renewTime),
      leaderTransitions: typeof spec.leaseTransitions === "number" ? spec.leaseTransitions : 0,
    };
    // json.Marshal(LeaderElectionRecord): metav1.Time has whole seconds.
    const raw = JSON.stringify({
      holderIdentity: record.holderIdentity,
      leaseDurationSeconds: record.leaseDurationSeconds,
      acquireTime: metaTime(record.acquireTime),
      renewTime: metaTime(record.renewTime),
      leaderTransitions: record.leaderTransitions,
    });
    return { record, raw };
  }

  private spec(r: GoRecord): Record<string, unknown> {
    return {
      holderIdentity: r.holderIdentity,
      leaseDurationSeconds: r.leaseDurationSeconds,
      acquireTime: microTime(r.acquireTime),
      renewTime: microTime(r.renewTime),
      leaseTransitions: r.leaderTransitions,
    };
  }

  private async create(r: GoRecord, signal: AbortSignal): Promise<void> {
    this.lease = await this.http(
      "POST",
      this.path(),
      {
        kind: "Lease",
        apiVersion: "coordination.k8s.io/v1",
        metadata: { name: this.o.name, namespace: this.o.namespace, creationTimestamp: null },
        spec: this.spec(r),
      },
      signal,
    );
  }

  private async update(r: GoRecord, signal: AbortSignal): Promise<void> {
    if (!this.lease) throw new Error("lease not initialized, call get or create first");
    this.lease = await this.http("PUT", this.path(this.o.name), { ...this.lease, spec: this.spec(r) }, signal);
  }

  private http(method: string, path: string, body: unknown, signal: AbortSignal): Promise<Record<string, unknown>> {
    const url = new URL(path, this.o.server.url);
    const send = this.o.server.tls ? httpsRequest : httpRequest;
    const timeout = AbortSignal.any([signal, AbortSignal.timeout(Math.max(1000, Math.ceil(this.o.renewDeadlineMs / 2)))]);
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          ca: this.ca,
          signal: timeout,
          headers: { Authorization: `Bearer ${this.o.token ?? ADMIN_TOKEN}`, "Content-Type": "application/json", Accept: "application/json" },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (c: string) => (text += c));
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            if (status < 200 || status > 299) reject(new HttpStatusError(status));
            else resolve(JSON.parse(text) as Record<string, unknown>);
          });
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
