/**
 * Errors of the `--http` server. Both are usage problems the operator fixes on the command line, so the
 * CLI exits 64 for either, before campaigning starts.
 */

/** The `--http` value cannot be parsed. */
export class HttpAddressError extends Error {
  constructor(
    readonly value: string,
    problem: string,
  ) {
    super(`--http ${JSON.stringify(value)}: ${problem}; use host:port, :port or [ipv6]:port, e.g. 127.0.0.1:8080`);
    this.name = "HttpAddressError";
  }
}

/** The server could not listen (port in use, privileged port, host not local or not resolvable). */
export class HttpListenError extends Error {
  constructor(
    /** The address as the operator wrote it, e.g. `127.0.0.1:8080`. */
    readonly address: string,
    /** The system error code, e.g. `EADDRINUSE`, when there was one. */
    readonly code: string | undefined,
    problem: string,
    options?: ErrorOptions,
  ) {
    super(`--http ${address}: ${problem}`, options);
    this.name = "HttpListenError";
  }
}

/** One-line explanation and fix for a listen failure. */
export function listenProblem(code: string | undefined, port: number): string {
  switch (code) {
    case "EADDRINUSE":
      return "address already in use; pick another port";
    case "EACCES":
      return port < 1024
        ? "permission denied: ports below 1024 need privileges; pick a port above 1023"
        : "permission denied; pick another port";
    case "EADDRNOTAVAIL":
      return "address not available on this host; use the address of a local interface, 0.0.0.0 or :port";
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_NONAME":
      return "host name does not resolve; use an IP address or a resolvable host name";
    case "EAFNOSUPPORT":
      return "address family not supported on this host (IPv6 disabled?); use an IPv4 address";
    default:
      return `cannot listen (${code ?? "unknown error"}); check the host and port`;
  }
}
