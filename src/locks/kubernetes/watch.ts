import { request as httpRequest, type IncomingMessage, type RequestOptions } from "node:http";
import { request as httpsRequest } from "node:https";
import type * as K8s from "@kubernetes/client-node";

/**
 * A watch on one Lease (`fieldSelector=metadata.name=<name>`), so a follower hears of a release or a
 * takeover at once instead of at its next retry. Only a hint: the elector re-reads the Lease when told
 * and keeps its retry loop, so a missed or spurious notification costs time, never safety.
 *
 * Streams with node:http(s) on the client library's TLS and credential settings
 * (`KubeConfig.applyToHTTPSOptions`) rather than with its `Watch`, which cannot be cancelled before
 * the server answers: a hung API server would keep the process alive after the lock is closed.
 */

export interface LeaseWatchOptions {
  kubeConfig: K8s.KubeConfig;
  server: string;
  namespace: string;
  name: string;
  /** `lease`: the object of a MODIFIED event (the Lease as the server stored it), to observe a renewal. */
  onChange: (lease?: unknown) => void;
  /** True once the server answered the watch (events flow), false as soon as the stream ends. */
  onHealth?: (connected: boolean) => void;
  signal: AbortSignal;
  /** Called once if the watch is forbidden or unauthorised; the lock then works by polling alone. */
  onForbidden: (status: number, message: string) => void;
  /** How long to wait for the server to answer a watch request before trying again. */
  responseTimeoutMs: number;
}

/**
 * Server-side timeout of one watch request; the loop reconnects afterwards. Kept short, and enforced on
 * our side too, so a connection that died silently (no RST: a partition, a vanished load balancer) is
 * replaced within about a minute instead of when TCP gives up.
 */
const WATCH_TIMEOUT_SECONDS = 60;
const WATCH_CAP_MS = (WATCH_TIMEOUT_SECONDS + 15) * 1000;
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5000;

export function watchLease(options: LeaseWatchOptions): void {
  void loop(options);
}

async function loop(options: LeaseWatchOptions): Promise<void> {
  const { signal } = options;
  let backoff = MIN_BACKOFF_MS;
  while (!signal.aborted) {
    const started = performance.now();
    const outcome = await watchOnce(options);
    options.onHealth?.(false);
    if (signal.aborted) return;
    if (outcome.forbidden) {
      options.onForbidden(outcome.forbidden.status, outcome.forbidden.message);
      return;
    }
    // A connection that lasted a while was healthy: reconnect quickly.
    if (performance.now() - started > MAX_BACKOFF_MS) backoff = MIN_BACKOFF_MS;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, backoff);
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
      signal.addEventListener("abort", done, { once: true });
    });
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }
}

interface Outcome {
  forbidden?: { status: number; message: string };
}

async function watchOnce(options: LeaseWatchOptions): Promise<Outcome> {
  const { signal } = options;
  const url = new URL(
    `${options.server.replace(/\/+$/, "")}/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(options.namespace)}/leases`,
  );
  url.searchParams.set("watch", "true");
  url.searchParams.set("fieldSelector", `metadata.name=${options.name}`);
  url.searchParams.set("timeoutSeconds", String(WATCH_TIMEOUT_SECONDS));

  const opts: RequestOptions & { headers: Record<string, string> } = { headers: {} };
  try {
    await options.kubeConfig.applyToHTTPSOptions(opts as Parameters<K8s.KubeConfig["applyToHTTPSOptions"]>[0]);
  } catch {
    return {};
  }
  if (signal.aborted) return {};

  return new Promise<Outcome>((resolve) => {
    const send = url.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(url, { ...opts, method: "GET", signal, headers: { ...opts.headers, Accept: "application/json" } });
    const noAnswer = setTimeout(() => req.destroy(), options.responseTimeoutMs);
    const cap = setTimeout(() => req.destroy(), WATCH_CAP_MS);
    req.on("socket", (socket) => socket.setKeepAlive(true, 15_000));
    req.on("close", () => {
      clearTimeout(noAnswer);
      clearTimeout(cap);
    });
    req.on("error", () => resolve({}));
    req.on("response", (res: IncomingMessage) => {
      clearTimeout(noAnswer);
      res.on("error", () => resolve({}));
      res.on("close", () => resolve({}));
      if (res.statusCode === 200) options.onHealth?.(true);
      if (res.statusCode !== 200) {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          body += chunk;
        });
        res.on("end", () => {
          if (res.statusCode === 401 || res.statusCode === 403) {
            let message = "";
            try {
              message = String((JSON.parse(body) as { message?: unknown }).message ?? "");
            } catch {
              // not a Status
            }
            resolve({ forbidden: { status: res.statusCode, message } });
          } else {
            resolve({});
          }
        });
        return;
      }
      let buffered = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        buffered += chunk;
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          if (line === "") continue;
          let event: { type?: unknown; object?: unknown };
          try {
            event = JSON.parse(line) as { type?: unknown; object?: unknown };
          } catch {
            continue;
          }
          const type = event.type;
          if (type === "MODIFIED") options.onChange(event.object);
          else if (type === "ADDED" || type === "DELETED") options.onChange();
          // ERROR (e.g. 410 Gone) ends the stream on the server side; we reconnect. BOOKMARK: nothing.
        }
      });
    });
    req.end();
  });
}
