import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { formatTime } from "../election/record.js";
import { formatHttpAddress, type HttpAddress } from "./address.js";
import { HttpListenError, listenProblem } from "./errors.js";
import type { MetricsExposition } from "./metrics.js";
import type { LeaderStatusSource } from "./source.js";

/**
 * Bounds that keep a slow or hostile client from holding the process: small headers, short deadlines,
 * few connections. The endpoints answer from memory, so nothing legitimate comes near them.
 */
export interface HttpLimits {
  /** Whole request headers must arrive within this (slowloris). */
  headersTimeoutMs: number;
  /** The whole request must arrive within this. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Any connection without traffic for this long is destroyed. */
  idleTimeoutMs: number;
  /** How often the header and request deadlines are enforced. */
  checkIntervalMs: number;
  /** Larger request headers get 431. */
  maxHeaderBytes: number;
  maxHeadersCount: number;
  /** Further connections are refused while this many are open. */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = Object.freeze({
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 15_000,
  checkIntervalMs: 1_000,
  maxHeaderBytes: 8 * 1024,
  maxHeadersCount: 64,
  maxConnections: 64,
});

export interface HttpServerOptions extends HttpAddress {
  source: LeaderStatusSource;
  metrics: MetricsExposition;
  limits?: Partial<HttpLimits>;
  /** Errors of the listening socket after it started (rare); ignored when absent. */
  onError?: (error: Error) => void;
}

export interface HttpServerAddress {
  /** The address actually bound, e.g. `127.0.0.1` or `::`. */
  host: string;
  /** The port actually bound (the real one when 0 was asked for). */
  port: number;
  /** `http://127.0.0.1:8080`, for logs. */
  url: string;
}

export interface RunningHttpServer {
  address: HttpServerAddress;
  /** Stops listening and drops open connections; safe to call twice. */
  close(): Promise<void>;
}

type Handler = (req: IncomingMessage, res: ServerResponse, query: URLSearchParams, source: LeaderStatusSource, metrics: MetricsExposition) => void | Promise<void>;

const ALLOW = "GET, HEAD";
const ENDPOINTS = "/healthz, /healthz/leaderElection, /leader, /metrics";

/**
 * Serves `/healthz` (also `/healthz/leaderElection`), `/leader` and `/metrics`. Resolves once listening;
 * rejects with `HttpListenError` (the CLI exits 64) when the address cannot be bound.
 */
export async function startHttpServer(options: HttpServerOptions): Promise<RunningHttpServer> {
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
  const { source, metrics } = options;
  const shown = formatHttpAddress(options);

  const server = createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      connectionsCheckingInterval: limits.checkIntervalMs,
    },
    (req, res) => {
      void dispatch(req, res, source, metrics);
    },
  );
  server.maxHeadersCount = limits.maxHeadersCount;
  server.maxConnections = limits.maxConnections;
  server.maxRequestsPerSocket = 1000;
  server.setTimeout(limits.idleTimeoutMs);

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException): void => {
      reject(new HttpListenError(shown, error.code, listenProblem(error.code, options.port), { cause: error }));
    };
    server.once("error", onError);
    try {
      server.listen({ host: options.host === "" ? undefined : options.host, port: options.port }, () => {
        server.off("error", onError);
        resolve();
      });
    } catch (error) {
      // listen() throws synchronously for arguments net rejects outright.
      const code = (error as NodeJS.ErrnoException).code;
      reject(new HttpListenError(shown, code, listenProblem(code, options.port), { cause: error }));
    }
  });
  server.on("error", (error) => options.onError?.(error));

  const info = server.address() as AddressInfo;
  const urlHost = info.family === "IPv6" || info.address.includes(":") ? `[${info.address}]` : info.address;
  let closing: Promise<void> | undefined;
  return {
    address: { host: info.address, port: info.port, url: `http://${urlHost}:${info.port}` },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

const ROUTES = new Map<string, Handler>([
  ["/healthz", healthz],
  ["/healthz/leaderElection", healthz],
  ["/leader", leader],
  ["/metrics", metricsEndpoint],
]);

async function dispatch(req: IncomingMessage, res: ServerResponse, source: LeaderStatusSource, metrics: MetricsExposition): Promise<void> {
  try {
    const target = req.url ?? "/";
    const q = target.indexOf("?");
    const path = q === -1 ? target : target.slice(0, q);
    const query = new URLSearchParams(q === -1 ? "" : target.slice(q + 1));
    const handler = ROUTES.get(path);
    if (handler === undefined) {
      send(res, 404, `not found: ${path.slice(0, 100)} (serving ${ENDPOINTS})\n`);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("Allow", ALLOW);
      // A request with a body we will not read: close rather than drain it.
      res.setHeader("Connection", "close");
      send(res, 405, `method ${req.method ?? ""} not allowed: use ${ALLOW}\n`);
      return;
    }
    await handler(req, res, query, source, metrics);
  } catch (error) {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    send(res, 500, `internal error: ${error instanceof Error ? error.message : String(error)}\n`);
  }
}

/** The HealthzAdaptor's verdict, client-go semantics (served as `/healthz/leaderElection` by components). */
function healthz(_req: IncomingMessage, res: ServerResponse, _query: URLSearchParams, source: LeaderStatusSource): void {
  const error = source.healthCheck();
  if (error === undefined) send(res, 200, "ok\n");
  else send(res, 500, `leaderElection failed: ${error.message}\n`);
}

/**
 * 200 while this process leads, 503 otherwise: a readiness probe or a load balancer health check on it
 * keeps traffic on the leader. `?format=name` is the old Kubernetes `leader-elector` sidecar's answer,
 * `{"name": "<leader>"}`, always 200, for clients that only want to find the leader.
 */
function leader(_req: IncomingMessage, res: ServerResponse, query: URLSearchParams, source: LeaderStatusSource): void {
  const format = query.get("format") ?? "json";
  if (format === "name") {
    sendJSON(res, 200, { name: source.leader() });
    return;
  }
  if (format !== "json") {
    send(res, 400, `unknown format ${JSON.stringify(format.slice(0, 50))}: use format=name or format=json\n`);
    return;
  }
  const isLeader = source.isLeading();
  const record = source.record();
  const holder = source.leader();
  sendJSON(res, isLeader ? 200 : 503, {
    name: source.name,
    identity: source.identity,
    leader: holder === "" ? null : holder,
    isLeader,
    term: source.term() ?? null,
    acquireTime: formatTime(record?.acquireTime ?? null, 3),
    renewTime: formatTime(record?.renewTime ?? null, 3),
    leaseDurationSeconds: record?.leaseDurationSeconds ?? null,
  });
}

async function metricsEndpoint(
  _req: IncomingMessage,
  res: ServerResponse,
  _query: URLSearchParams,
  _source: LeaderStatusSource,
  metrics: MetricsExposition,
): Promise<void> {
  const body = await metrics.exposition();
  send(res, 200, body, metrics.contentType);
}

function sendJSON(res: ServerResponse, status: number, value: unknown): void {
  send(res, status, `${JSON.stringify(value)}\n`, "application/json; charset=utf-8");
}

function send(res: ServerResponse, status: number, body: string, contentType = "text/plain; charset=utf-8"): void {
  res.statusCode = status;
  res.setHeader("Content-Type", contentType);
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("X-Content-Type-Options", "nosniff");
  // Node drops the body of a HEAD response and keeps the headers.
  res.end(body);
}
