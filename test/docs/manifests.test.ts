/**
 * Every Kubernetes object the project ships (examples/) or shows (YAML blocks of README.md, docs/ and
 * examples/**\/*.md) is valid against Kubernetes' OpenAPI schema, and every leader-run command line in
 * a manifest, Dockerfile or unit file is accepted by the real option parser. See support/doc-yaml.ts
 * for how a YAML block in the docs says what it is.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseCommandLine } from "../../src/cli/options.js";
import { checkAllYaml } from "./support/doc-yaml.js";
import { containerInvocations, dockerfileInvocations, systemdInvocations, type Invocation } from "./support/invocations.js";
import { documentationFiles, readCodeBlocks } from "./support/markdown.js";

const all = await checkAllYaml();

function deploymentOf(file: string): Record<string, unknown> | undefined {
  const found = all.checked.find((c) => c.source.file === file);
  return found?.check.objects.find((o) => o.label.startsWith("apps/v1 Deployment"))?.value as Record<string, unknown> | undefined;
}

describe("Kubernetes YAML the project ships and shows", () => {
  test("is valid against the Kubernetes OpenAPI schema (unknown fields, wrong types and YAML traps fail)", () => {
    assert.deepEqual(all.problems, [], `invalid Kubernetes YAML:\n  ${all.problems.join("\n  ")}`);
  });

  test("examples/kubernetes holds the Deployment, ServiceAccount, Role and RoleBinding the docs describe", () => {
    const labels = all.checked.filter((c) => c.source.file.startsWith("examples/kubernetes/") && !c.block).flatMap((c) => c.check.objects.map((o) => o.label));
    for (const expected of [
      "apps/v1 Deployment report-worker",
      "v1 ServiceAccount leader-run",
      "rbac.authorization.k8s.io/v1 Role leader-run",
      "rbac.authorization.k8s.io/v1 RoleBinding leader-run",
    ]) {
      assert.ok(labels.includes(expected), `missing ${expected} in examples/kubernetes (found: ${labels.join(", ")})`);
    }
  });
});

function invocations(): Invocation[] {
  const found: Invocation[] = [];
  for (const c of all.checked) {
    for (const o of c.check.objects) found.push(...containerInvocations(o.value, `${o.file}:${o.line} ${o.label}`));
  }
  for (const file of documentationFiles()) {
    for (const block of readCodeBlocks(file)) {
      if (block.lang === "dockerfile") found.push(...dockerfileInvocations(block.text, `${file}:${block.line}`));
      if (block.lang === "ini" || block.lang === "systemd") found.push(...systemdInvocations(block.text, `${file}:${block.line}`));
    }
  }
  return found;
}

describe("leader-run command lines in manifests, Dockerfiles and unit files", () => {
  test("parse with the real option parser (a misspelt flag or a bad value fails here)", async () => {
    const found = invocations();
    // The example Deployment, the README's Dockerfile and unit file, docs/http.md's container.
    assert.ok(found.length >= 4, `expected at least 4 leader-run invocations, found ${found.map((f) => f.where).join("; ")}`);
    const failures: string[] = [];
    for (const inv of found) {
      try {
        const parsed = await parseCommandLine(inv.argv, { env: inv.env, cwd: "/" });
        if (parsed.command !== "run") failures.push(`${inv.where}: parsed as ${parsed.command}, not a run: ${JSON.stringify(inv.argv)}`);
      } catch (error) {
        failures.push(`${inv.where}: leader-run ${inv.argv.join(" ")}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    assert.deepEqual(failures, [], failures.join("\n"));
  });

  test("the example Deployment runs `node worker.js` on the Lease report-worker in the pod's namespace", async () => {
    const deployment = deploymentOf("examples/kubernetes/deployment.yaml");
    assert.ok(deployment, "examples/kubernetes/deployment.yaml has no valid Deployment");
    const [inv] = containerInvocations(deployment, "deployment.yaml");
    assert.ok(inv, "the Deployment's container does not run leader-run");
    const parsed = await parseCommandLine(inv.argv, { env: inv.env, cwd: "/" });
    assert.equal(parsed.command, "run");
    if (parsed.command !== "run") return;
    const o = parsed.options;
    assert.equal(o.lock.kind, "kubernetes");
    assert.equal(o.name, "report-worker");
    assert.equal(o.namespace, inv.env.POD_NAMESPACE, "--namespace comes from the downward API");
    assert.deepEqual(o.command, ["node", "worker.js"]);
    assert.equal(o.onLost, "campaign");
    assert.deepEqual([o.leaseDurationMs, o.renewDeadlineMs, o.retryPeriodMs], [15_000, 10_000, 2_000]);
    assert.equal(o.http?.port, 8080, "the probes use port 8080");
  });
});
