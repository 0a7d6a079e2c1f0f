import { HttpAddressError } from "./errors.js";

/**
 * node:net on first use: the CLI imports this module on every run, and loading node:net costs ≈ 4 ms
 * of start-up that only `--http` needs (issue #13).
 */
function net(): typeof import("node:net") {
  return process.getBuiltinModule("node:net");
}

/**
 * Parsing of `--http <host:port>`. Pure and free of prom-client so the CLI can import it statically and
 * reject a bad value (exit 64) before anything starts.
 */
export interface HttpAddress {
  /** IP or host name, IPv6 without brackets; `""` means every interface (Go's `:port`). */
  host: string;
  /** 0 asks the system for a free port. */
  port: number;
}

// RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens.
const HOSTNAME = /^(?=.{1,253}\.?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;

/** Accepts `host:port`, `:port` and `[ipv6]:port`; throws `HttpAddressError` saying what is wrong. */
export function parseHttpAddress(value: string): HttpAddress {
  const fail = (problem: string): never => {
    throw new HttpAddressError(value, problem);
  };
  if (value === "") fail("empty address");
  if (/\s/.test(value)) fail("contains whitespace");
  if (value.includes("/")) fail("give an address, not a URL (no scheme or path)");

  let host: string;
  let portText: string;
  if (value.startsWith("[")) {
    const close = value.indexOf("]");
    if (close === -1) fail("missing ] after the IPv6 address");
    host = value.slice(1, close);
    if (value[close + 1] !== ":") fail("missing :port after the bracketed IPv6 address");
    portText = value.slice(close + 2);
    if (!net().isIPv6(host)) fail(`${JSON.stringify(host)} is not an IPv6 address`);
  } else {
    const colon = value.lastIndexOf(":");
    if (colon === -1) fail("missing :port");
    host = value.slice(0, colon);
    portText = value.slice(colon + 1);
    if (host.includes(":")) fail("put an IPv6 address in brackets, e.g. [::1]:8080");
    if (host !== "" && !net().isIPv4(host)) {
      if (/^[\d.]+$/.test(host)) fail(`${JSON.stringify(host)} is not a valid IPv4 address`);
      if (!HOSTNAME.test(host)) fail(`${JSON.stringify(host)} is not a valid host name`);
    }
  }

  if (portText === "") fail("missing port number after :");
  if (!/^\d{1,5}$/.test(portText)) fail(`port ${JSON.stringify(portText)} is not a number`);
  const port = Number(portText);
  if (port > 65535) fail(`port ${port} is out of range (0-65535)`);
  return { host, port };
}

/** The canonical text of an address: `127.0.0.1:8080`, `[::1]:8080`, `:8080`. */
export function formatHttpAddress(address: HttpAddress): string {
  const host = net().isIP(address.host) === 6 ? `[${address.host}]` : address.host;
  return `${host}:${address.port}`;
}
