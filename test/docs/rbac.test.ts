/**
 * The Role in examples/kubernetes/rbac.yaml against what the Kubernetes backend really calls: the real
 * lock and elector run a whole cycle (create, renew, a standby watching, events, release, hand-over)
 * against the project's Lease API server, authorised with exactly the Role's rules, and every request
 * the server saw must be allowed by the Role. A new call without its rule fails here; a rule the code
 * never uses fails too, since the file claims to be the least leader-run needs.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { LeaderElector } from "../../src/election/elector.js";
import type { ResourceLock } from "../../src/election/lock.js";
import { REQUIRED_RBAC } from "../../src/locks/kubernetes/errors.js";
import { openKubernetesLock } from "../../src/locks/kubernetes/index.js";
import { K8S_SPEC, waitFor } from "../support/k8s/candidate.js";
import { LEADER_RUN_RULES, startLeaseApiServer, type LeaseApiServer, type Rule } from "../support/lease-api-server.js";
import { checkYaml, type YamlSource } from "./support/k8s-schema.js";
import { yamlSourceOfBlock } from "./support/doc-yaml.js";
import { readCodeBlocks, ROOT } from "./support/markdown.js";

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  verbs: string[];
}

/** The API group the server serves each resource in (as the real API server does). */
const GROUP_OF: Record<string, string> = { leases: "coordination.k8s.io", events: "" };

type Triple = `${string}/${string}:${string}`;
const triple = (group: string, resource: string, verb: string): Triple => `${group}/${resource}:${verb}`;

/** The rules of the one rbac/v1 Role (whole object or `<!-- k8s: io.k8s.api.rbac.v1.Role -->` fragment) in `source`. */
async function roleRulesOf(source: YamlSource): Promise<PolicyRule[]> {
  const check = await checkYaml(source);
  assert.deepEqual(check.problems, [], check.problems.join("\n"));
  const objects = check.objects.filter((o) => o.definition === "IoK8sApiRbacV1Role");
  assert.equal(objects.length, 1, `${source.file}: expected one Role, found ${check.objects.map((o) => o.label).join(", ")}`);
  return ((objects[0]!.value as { rules?: PolicyRule[] }).rules ?? []) as PolicyRule[];
}

/** Every (group, resource, verb) a Role grants, wildcards spelled out over what the server serves. */
function grants(rules: PolicyRule[]): Set<Triple> {
  const out = new Set<Triple>();
  for (const rule of rules) {
    for (const resource of Object.keys(GROUP_OF)) {
      const group = GROUP_OF[resource] as string;
      if (!(rule.apiGroups ?? []).some((g) => g === "*" || g === group)) continue;
      if (!(rule.resources ?? []).some((r) => r === "*" || r === resource)) continue;
      for (const verb of rule.verbs) out.add(triple(group, resource, verb));
    }
  }
  return out;
}

/** The Role's rules in the test server's form (it matches resource names; the group is fixed per resource). */
function serverRules(rules: PolicyRule[]): Rule[] {
  const byResource = new Map<string, Set<string>>();
  for (const t of grants(rules)) {
    const [, rest] = t.split("/") as [string, string];
    const [resource, verb] = rest.split(":") as [string, string];
    byResource.set(resource, (byResource.get(resource) ?? new Set()).add(verb));
  }
  return [...byResource].map(([resource, verbs]) => ({ resources: [resource], verbs: [...verbs].sort() }));
}

const RBAC_FILE = "examples/kubernetes/rbac.yaml";
let roleRules: PolicyRule[];
const dir = mkdtempSync(join(tmpdir(), "docs-rbac-test-"));
let server: LeaseApiServer;
const locks: ResourceLock[] = [];

before(async () => {
  roleRules = await roleRulesOf({ file: RBAC_FILE, text: readFileSync(join(ROOT, RBAC_FILE), "utf8") });
  server = await startLeaseApiServer({
    namespaces: ["jobs"],
    tokens: { "sa-token": { user: "system:serviceaccount:jobs:leader-run", rules: serverRules(roleRules) } },
  });
});
after(async () => {
  await Promise.all(locks.map((l) => l.close?.()));
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe(`the Role in ${RBAC_FILE}`, () => {
  test("allows every request of a whole election cycle, and the code uses every rule it grants", async () => {
    const kubeconfig = server.writeKubeconfig(join(dir, "sa.json"), { token: "sa-token", namespace: "jobs" });
    const warnings: string[] = [];
    const timing = { leaseDuration: 3000, renewDeadline: 2000, retryPeriod: 200 };
    const electors = new Map<string, { elector: LeaderElector; stop: AbortController; done?: Promise<void> }>();
    for (const id of ["a", "b"]) {
      const lock = await openKubernetesLock(K8S_SPEC, {
        name: "rbac-cycle",
        identity: id,
        leaseDurationMs: timing.leaseDuration,
        renewDeadlineMs: timing.renewDeadline,
        kubeconfig,
        env: {},
        onWarning: (m) => warnings.push(`${id}: ${m}`),
      });
      locks.push(lock);
      const elector = new LeaderElector({
        lock,
        ...timing,
        releaseOnCancel: true,
        name: "rbac-cycle",
        callbacks: {
          onStartedLeading: (signal) => new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true })),
          onStoppedLeading: () => undefined,
        },
      });
      electors.set(id, { elector, stop: new AbortController() });
    }
    const start = (id: string): void => {
      const e = electors.get(id)!;
      e.done = e.elector.run(e.stop.signal);
    };
    const stop = async (id: string): Promise<void> => {
      const e = electors.get(id)!;
      e.stop.abort();
      await e.done;
    };
    const seen = (verb: string, resource: string): boolean => server.requests.some((r) => r.verb === verb && r.resource === resource && r.status < 400);

    start("a");
    await waitFor(() => electors.get("a")!.elector.isLeader(), 10_000, "a to lead (get, create)");
    await waitFor(() => seen("update", "leases"), 10_000, "a renewal (update)");
    start("b");
    await waitFor(() => seen("watch", "leases"), 10_000, "the standby's watch");
    await waitFor(() => seen("create", "events"), 10_000, "the 'became leader' event");
    await stop("a");
    await waitFor(() => electors.get("b")!.elector.isLeader(), 10_000, "b to take over after a released");
    await stop("b");

    const denied = server.requests.filter((r) => r.status === 401 || r.status === 403);
    assert.deepEqual(denied.map((r) => `${r.method} ${r.path} → ${r.status}`), [], "requests the Role does not allow");
    assert.deepEqual(warnings, [], "the lock warned (a forbidden watch or event?)");

    const granted = grants(roleRules);
    const used = new Set(server.requests.map((r) => triple(GROUP_OF[r.resource] ?? `?${r.resource}`, r.resource, r.verb)));
    const missing = [...used].filter((t) => !granted.has(t));
    assert.deepEqual(missing, [], `the code calls (group/resource:verb) ${missing.join(", ")} but ${RBAC_FILE} does not grant it`);
    const unused = [...granted].filter((t) => !used.has(t));
    assert.deepEqual(unused, [], `${RBAC_FILE} grants ${unused.join(", ")}, which the code never calls: remove it, or exercise the call here`);
  });

  test("is what docs/kubernetes.md shows, what the test API server assumes, and what the lock's errors ask for", async () => {
    const granted = [...grants(roleRules)].sort();
    const block = readCodeBlocks("docs/kubernetes.md").find((b) => b.lang === "yaml" && /^rules:/m.test(b.text));
    assert.ok(block, "docs/kubernetes.md has no YAML block with the Role's rules");
    const source = yamlSourceOfBlock(block);
    assert.ok(typeof source !== "string", source as string);
    assert.deepEqual([...grants(await roleRulesOf(source))].sort(), granted, `docs/kubernetes.md:${block.line} differs from ${RBAC_FILE}`);

    const fromServer = new Set<Triple>();
    for (const r of LEADER_RUN_RULES) for (const res of r.resources) for (const v of r.verbs) fromServer.add(triple(GROUP_OF[res] ?? "?", res, v));
    assert.deepEqual([...fromServer].sort(), granted, "LEADER_RUN_RULES in test/support/lease-api-server.ts differs from the Role");

    for (const t of granted) {
      const [, rest] = t.split("/") as [string, string];
      const [resource, verb] = rest.split(":") as [string, string];
      assert.ok(REQUIRED_RBAC.includes(`"${verb}"`) && REQUIRED_RBAC.includes(`"${resource}"`), `REQUIRED_RBAC (the 403 hint) does not mention ${verb} on ${resource}: ${REQUIRED_RBAC}`);
    }
  });
});
