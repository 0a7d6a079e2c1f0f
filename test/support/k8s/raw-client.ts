import { readFileSync } from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { request as httpsRequest } from "node:https";
import { ADMIN_TOKEN, TEST_CA_FILE, type LeaseApiServer } from "../lease-api-server.js";

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  /** Parsed body, or undefined when it is not JSON. */
  json: Record<string, unknown> | undefined;
}

/**
 * One HTTP request with exactly the bytes given, for what the client library would reformat (a body
 * with a malformed MicroTime, a string where an int32 belongs) or cannot send (no credentials).
 */
export function rawRequest(
  server: LeaseApiServer,
  method: string,
  path: string,
  options: { token?: string | null; body?: string | object; signal?: AbortSignal } = {},
): Promise<RawResponse> {
  const token = options.token === undefined ? ADMIN_TOKEN : options.token;
  const body = options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const url = new URL(path, server.url);
  const send = server.tls ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { method, headers, ca: server.tls ? readFileSync(TEST_CA_FILE) : undefined, signal: options.signal }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => {
        let json: Record<string, unknown> | undefined;
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

export const LEASES_PATH = (namespace: string): string => `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
