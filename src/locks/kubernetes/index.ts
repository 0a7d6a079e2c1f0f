/**
 * The Kubernetes backend (`--lock kubernetes:`): a coordination.k8s.io/v1 Lease, interoperable with
 * client-go. `leader-run/locks/kubernetes` exports this module; the client loads only when a lock opens.
 */
import { plainBackend, type LockCapabilities } from "../backend.js";
import { openKubernetesLock } from "./lock.js";

export * from "./lock.js";
export { KubernetesConfigError, KubernetesUnavailableError, REQUIRED_RBAC } from "./errors.js";

export const kubernetesCapabilities: LockCapabilities = {
  expiresByItself: false,
  // A watch on the Lease.
  notifies: true,
  seesHolderProcesses: false,
  // leaseDurationSeconds is an integer; times are MicroTime, which a JS Date keeps to the millisecond.
  leaseDurationResolutionMs: 1000,
  timeResolutionMs: 1,
  termSurvivesDelete: false,
  rawChangesOnEveryWrite: true,
  announcesRenewals: true,
};

export const kubernetesBackend = plainBackend("kubernetes", kubernetesCapabilities, (spec, options) => {
  const { name, identity, leaseDurationMs, renewDeadlineMs, namespace, kubeconfig, env, onWarning } = options;
  return openKubernetesLock(spec, { name, identity, leaseDurationMs, renewDeadlineMs, namespace, kubeconfig, env, onWarning });
});
