import type { LeaderElector } from "../election/elector.js";
import type { ElectionEvent } from "../election/events.js";
import type { HealthzAdaptor } from "../election/healthz.js";
import type { MetricsProvider } from "../election/metrics.js";
import { HttpListenError, LeaderRunMetrics, electorStatusSource, startHttpServer, type LeaderStatusSource } from "../http/index.js";
import { UsageError } from "./errors.js";
import type { Logger } from "./log.js";
import type { RunOptions } from "./options.js";

/** What the run command calls on the `--http` side. Loaded only when `--http` is given. */
export interface HttpHooks {
  readonly metrics: MetricsProvider;
  readonly healthzTimeoutMs: number;
  attach(elector: LeaderElector, healthz: HealthzAdaptor): void;
  onElectionEvent(event: ElectionEvent): void;
  childStarted(): void;
  childExited(exitCode: number): void;
  childRestarted(): void;
  close(): Promise<void>;
}

/**
 * Binds the server before campaigning starts, so a port in use is a usage error (exit 64) and nothing
 * was acquired. Until the elector is attached the endpoints report "not leading".
 */
export async function startRunHttp(options: RunOptions, log: Logger): Promise<HttpHooks> {
  const address = options.http;
  if (!address) throw new Error("startRunHttp called without --http");
  const metrics = new LeaderRunMetrics({ name: options.name });
  let view: LeaderStatusSource | undefined;
  const source: LeaderStatusSource = {
    name: options.name,
    identity: options.identity,
    isLeading: () => view?.isLeading() ?? false,
    leader: () => view?.leader() ?? "",
    term: () => view?.term(),
    record: () => view?.record(),
    healthCheck: () => view?.healthCheck(),
  };
  let server;
  try {
    server = await startHttpServer({
      host: address.host,
      port: address.port,
      source,
      metrics,
      onError: (error) => log.warn("http_error", { error: error.message }),
    });
  } catch (error) {
    if (error instanceof HttpListenError) throw new UsageError(error.message, { cause: error });
    throw error;
  }
  log.info("http_listening", { url: server.address.url });
  return {
    metrics,
    healthzTimeoutMs: options.healthzTimeoutMs,
    attach(elector, healthz) {
      view = electorStatusSource({ name: options.name, identity: options.identity, elector, healthz });
    },
    onElectionEvent: (event) => metrics.onElectionEvent(event),
    childStarted: () => metrics.childStarted(),
    childExited: (code) => metrics.childExited(code),
    childRestarted: () => metrics.childRestarted(),
    close: () => server.close(),
  };
}
