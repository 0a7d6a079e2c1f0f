import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";
import type * as K8s from "@kubernetes/client-node";
import { KubernetesConfigError } from "./errors.js";

/**
 * Where the cluster, the credentials and the namespace come from, in the order a workload expects:
 * `--kubeconfig`; else the pod's service account (in a cluster); else `KUBECONFIG`; else
 * `~/.kube/config`. The namespace: `--namespace`; else the service account's namespace; else the
 * kubeconfig context's; else `default`.
 */

export interface KubeConfigSource {
  kubeconfig?: string;
  namespace?: string;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * Prefix of the service account directory (`<root>/var/run/secrets/kubernetes.io/serviceaccount`);
   * `""` in a pod. Tests point it at a temporary directory.
   */
  inClusterRoot?: string;
}

export interface ResolvedKubeConfig {
  kubeConfig: K8s.KubeConfig;
  namespace: string;
  /** API server URL. */
  server: string;
  /** Where the credentials came from, for messages. */
  credentials: string;
}

const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

export function resolveKubeConfig(lib: typeof K8s, source: KubeConfigSource): ResolvedKubeConfig {
  const env = source.env ?? process.env;
  const kc = new lib.KubeConfig();
  let credentials: string;
  let namespace = nonEmpty(source.namespace);
  const saDir = `${source.inClusterRoot ?? ""}${SERVICE_ACCOUNT_DIR}`;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;

  if (source.kubeconfig) {
    load(kc, [source.kubeconfig]);
    credentials = `kubeconfig ${source.kubeconfig}`;
  } else if (host && port && existsSync(join(saDir, "token"))) {
    loadInCluster(kc, host, port, saDir);
    credentials = "the pod's service account";
    namespace ??= nonEmpty(readOptional(join(saDir, "namespace")));
  } else if (env.KUBECONFIG) {
    const files = env.KUBECONFIG.split(delimiter).filter(Boolean);
    load(kc, files);
    credentials = `KUBECONFIG=${env.KUBECONFIG}`;
  } else {
    const home = env.HOME || homedir();
    const file = join(home, ".kube", "config");
    if (!existsSync(file)) {
      throw new KubernetesConfigError(
        `no Kubernetes configuration found: not in a pod (KUBERNETES_SERVICE_HOST is unset), KUBECONFIG is unset and ${file} does not exist; pass --kubeconfig <file>`,
      );
    }
    load(kc, [file]);
    credentials = `kubeconfig ${file}`;
  }

  const context = kc.getContextObject(kc.getCurrentContext());
  const cluster = kc.getCurrentCluster();
  if (!context || !cluster) {
    throw new KubernetesConfigError(
      `${credentials} has no usable current context (current-context: ${JSON.stringify(kc.getCurrentContext() ?? "")}); set one with "kubectl config use-context"`,
    );
  }
  const user = kc.getCurrentUser();
  if (user && !credentials.startsWith("the pod")) credentials += ` (user "${user.name}")`;
  namespace ??= nonEmpty(context.namespace) ?? "default";

  // The client library refuses plain-HTTP servers (e.g. `kubectl proxy`) unless TLS checks are
  // "skipped"; over HTTP there is nothing to skip, so say so for it.
  if (cluster.server.startsWith("http:") && !cluster.skipTLSVerify) {
    kc.loadFromOptions({
      clusters: kc.clusters.map((c) => (c.name === cluster.name ? { ...c, skipTLSVerify: true } : c)),
      users: kc.users,
      contexts: kc.contexts,
      currentContext: kc.currentContext,
    });
  }
  return { kubeConfig: kc, namespace, server: cluster.server, credentials };
}

function load(kc: K8s.KubeConfig, files: string[]): void {
  files.forEach((file, i) => {
    try {
      if (i === 0) {
        kc.loadFromFile(file);
      } else {
        const more = new (kc.constructor as new () => K8s.KubeConfig)();
        more.loadFromFile(file);
        kc.mergeConfig(more);
      }
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      const why = e.code === "ENOENT" ? "no such file" : e.message.split("\n")[0];
      throw new KubernetesConfigError(`cannot load kubeconfig ${file}: ${why}`, { cause: error });
    }
  });
}

/** The pod's service account, as client-go's `rest.InClusterConfig`; the token file is re-read as it rotates. */
function loadInCluster(kc: K8s.KubeConfig, host: string, port: string, saDir: string): void {
  const scheme = ["80", "8080", "8001"].includes(port) ? "http" : "https";
  const server = `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
  kc.loadFromOptions({
    clusters: [{ name: "inCluster", server, caFile: join(saDir, "ca.crt"), skipTLSVerify: false }],
    users: [{ name: "inClusterUser", authProvider: { name: "tokenFile", config: { tokenFile: join(saDir, "token") } } }],
    contexts: [{ name: "inClusterContext", cluster: "inCluster", user: "inClusterUser" }],
    currentContext: "inClusterContext",
  });
}

function readOptional(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return undefined;
  }
}

function nonEmpty(s: string | undefined | null): string | undefined {
  return s === undefined || s === null || s === "" ? undefined : s;
}
