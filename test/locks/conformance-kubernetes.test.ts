import { readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kubernetesBackend, kubernetesCapabilities } from "../../src/locks/kubernetes/index.js";
import { FreezeProxy } from "../support/freeze-proxy.js";
import { startLeaseApiServer, type LeaseApiServer } from "../support/lease-api-server.js";
import { conformance } from "./conformance.js";

let dir = "";
let server: LeaseApiServer | undefined;
let proxy: FreezeProxy | undefined;
let kubeconfig = "";

conformance({
  title: "kubernetes (test Lease API server)",
  capabilities: kubernetesCapabilities,
  async start() {
    dir = await mkdtemp(join(tmpdir(), "leader-run-conformance-k8s-"));
    server = await startLeaseApiServer();
    // The API server runs in this process: SIGSTOP cannot freeze it, a proxy in front can.
    proxy = await FreezeProxy.start(server.port);
    kubeconfig = server.writeKubeconfig(join(dir, "kubeconfig.json"), { namespace: "default" });
    writeFileSync(kubeconfig, readFileSync(kubeconfig, "utf8").replace(`:${server.port}"`, `:${proxy.port}"`));
    return undefined;
  },
  async stop() {
    await proxy?.close();
    await server?.close();
    await rm(dir, { recursive: true, force: true });
  },
  open(name, identity, timing) {
    return kubernetesBackend.open(
      { kind: "kubernetes", url: "kubernetes:", redacted: "kubernetes:" },
      { name, identity, ...timing, kubeconfig, env: {}, onWarning: () => undefined },
    );
  },
  async freeze() {
    proxy?.freeze();
  },
  async thaw() {
    proxy?.thaw();
  },
  async deleteRecord(name) {
    server?.deleteLease("default", name);
  },
});
