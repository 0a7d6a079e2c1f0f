import { DEFAULT_ETCD_PREFIX, etcdBackend, etcdCapabilities, etcdLeaseKeys } from "../../src/locks/etcd/index.js";
import { parseLockUrl, type EtcdLockSpec } from "../../src/locks/url.js";
import { hasEtcd, startEtcd, type EtcdCluster } from "../support/etcd-server.js";
import { conformance } from "./conformance.js";

let cluster: EtcdCluster | undefined;
let frozen = false;

function spec(url: string): EtcdLockSpec {
  const s = parseLockUrl(url);
  if (s.kind !== "etcd") throw new Error(`not a etcd URL: ${url}`);
  return s;
}

conformance({
  title: "etcd (single member)",
  capabilities: etcdCapabilities,
  async start() {
    if (!hasEtcd()) return "etcd/etcdctl not installed: apt-get install etcd-server etcd-client";
    cluster = await startEtcd();
    return undefined;
  },
  async stop() {
    await cluster?.stop();
  },
  open(name, identity, timing) {
    const url = cluster?.url ?? "";
    return etcdBackend.open(spec(url), { name, identity, ...timing, env: {} });
  },
  // SIGSTOP of every member: connections stay open, the kernel buffers requests, nothing answers.
  async freeze() {
    frozen = true;
    for (const m of cluster?.members ?? []) await m.pause();
  },
  async thaw() {
    if (!frozen) return;
    frozen = false;
    for (const m of cluster?.members ?? []) m.resume();
  },
  // The record key only: the term key stays, as after the record's etcd lease expires.
  async deleteRecord(name) {
    await cluster?.etcdctl(["del", etcdLeaseKeys(DEFAULT_ETCD_PREFIX, name).lease]);
  },
});
