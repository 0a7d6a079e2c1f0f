import { test } from "node:test";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import assert from "node:assert/strict";
import { formatHttpAddress, parseHttpAddress } from "../../src/http/address.js";
import { HttpAddressError } from "../../src/http/errors.js";

test("parseHttpAddress accepts host:port, :port and [ipv6]:port", () => {
  assert.deepEqual(parseHttpAddress("127.0.0.1:8080"), { host: "127.0.0.1", port: 8080 });
  assert.deepEqual(parseHttpAddress(":9090"), { host: "", port: 9090 });
  assert.deepEqual(parseHttpAddress("[::1]:8080"), { host: "::1", port: 8080 });
  assert.deepEqual(parseHttpAddress("[::]:80"), { host: "::", port: 80 });
  assert.deepEqual(parseHttpAddress("localhost:0"), { host: "localhost", port: 0 });
  assert.deepEqual(parseHttpAddress("0.0.0.0:65535"), { host: "0.0.0.0", port: 65535 });
  assert.deepEqual(parseHttpAddress("leader-run.default.svc.cluster.local:8080"), {
    host: "leader-run.default.svc.cluster.local",
    port: 8080,
  });
  assert.deepEqual(parseHttpAddress("[fe80::1%eth0]:8080"), { host: "fe80::1%eth0", port: 8080 });
});

test("parseHttpAddress rejects malformed values with a one-line message saying how to fix them", () => {
  const cases: [string, RegExp][] = [
    ["", /empty address/],
    ["8080", /missing :port/],
    ["localhost", /missing :port/],
    ["localhost:", /missing port number/],
    ["localhost:http", /port "http" is not a number/],
    ["localhost:65536", /port 65536 is out of range/],
    ["localhost:-1", /port "-1" is not a number/],
    ["localhost:123456", /not a number/],
    ["::1:8080", /put an IPv6 address in brackets/],
    ["[::1]8080", /missing :port after the bracketed/],
    ["[::1", /missing \]/],
    ["[127.0.0.1]:80", /is not an IPv6 address/],
    ["http://127.0.0.1:8080", /not a URL/],
    ["127.0.0.1:8080/metrics", /not a URL/],
    ["300.1.1.1:80", /not a valid IPv4 address/],
    ["bad_host:80", /not a valid host name/],
    [" :80", /whitespace/],
  ];
  for (const [value, expected] of cases) {
    assert.throws(
      () => parseHttpAddress(value),
      (error: unknown) => {
        assert.ok(error instanceof HttpAddressError, `${value}: ${String(error)}`);
        assert.match(error.message, expected, value);
        assert.ok(error.message.startsWith(`--http ${JSON.stringify(value)}: `), error.message);
        assert.match(error.message, /e\.g\. 127\.0\.0\.1:8080$/);
        assert.ok(!error.message.includes("\n"));
        assert.equal(error.value, value);
        return true;
      },
    );
  }
});

test("formatHttpAddress writes the canonical form that parseHttpAddress reads back", () => {
  for (const text of ["127.0.0.1:8080", ":9090", "[::1]:8080", "localhost:0"]) {
    assert.equal(formatHttpAddress(parseHttpAddress(text)), text);
  }
});

test("parsing --http loads no prom-client; only the dynamically imported server module does", async () => {
  const script = `
    import { createRequire } from "node:module";
    const require = createRequire(import.meta.url);
    const loaded = () => Object.keys(require.cache).some((k) => k.includes("prom-client"));
    await import(${JSON.stringify(new URL("../../src/http/address.ts", import.meta.url).href)});
    const before = loaded();
    await import(${JSON.stringify(new URL("../../src/http/index.ts", import.meta.url).href)});
    console.log(JSON.stringify({ before, after: loaded() }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    timeout: 30_000,
  });
  assert.deepEqual(JSON.parse(stdout.trim()), { before: false, after: true });
});
