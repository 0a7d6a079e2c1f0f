/**
 * The `--http` server. The CLI loads this module with a dynamic `import()` only when `--http` is given,
 * so prom-client is never loaded otherwise. `parseHttpAddress` lives in `./address.js`, which the CLI may
 * import statically to validate the flag up front.
 */
export { parseHttpAddress, formatHttpAddress, type HttpAddress } from "./address.js";
export { HttpAddressError, HttpListenError } from "./errors.js";
export { LeaderRunMetrics, type LeaderRunMetricsOptions, type MetricsExposition } from "./metrics.js";
export { electorStatusSource, type LeaderStatusSource, type ElectorView, type HealthChecker, type ElectorStatusOptions } from "./source.js";
export {
  startHttpServer,
  DEFAULT_HTTP_LIMITS,
  type HttpLimits,
  type HttpServerOptions,
  type HttpServerAddress,
  type RunningHttpServer,
} from "./server.js";
