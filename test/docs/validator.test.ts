/**
 * The schema check itself: the mistakes issue #15 names must fail with a message that names the file
 * (and the Markdown line) and the field, and a YAML block in the docs must say what it is.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkYaml } from "./support/k8s-schema.js";
import { yamlSourceOfBlock } from "./support/doc-yaml.js";
import { codeBlocks } from "./support/markdown.js";

const DEPLOYMENT_WITH_MAPPING_ARG = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: w
spec:
  selector:
    matchLabels: { app: w }
  template:
    metadata:
      labels: { app: w }
    spec:
      containers:
        - name: w
          image: w:1
          command: ["leader-run"]
          args:
            - --lock=kubernetes:
            - --
            - node
`;

const LEASE_WITH_STRING_DURATION = `apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: l
spec:
  holderIdentity: a
  leaseDurationSeconds: "15"
`;

async function problemsOfMarkdown(markdown: string): Promise<string[]> {
  const problems: string[] = [];
  for (const block of codeBlocks("docs/new.md", markdown).filter((b) => b.lang === "yaml")) {
    const source = yamlSourceOfBlock(block);
    if (typeof source === "string") problems.push(source);
    else problems.push(...(await checkYaml(source)).problems);
  }
  return problems;
}

describe("Kubernetes schema check", () => {
  test("args as a mapping (an unquoted `--lock=kubernetes:`) names the file, the line and the field", async () => {
    const { problems } = await checkYaml({ file: "examples/kubernetes/bad.yaml", text: DEPLOYMENT_WITH_MAPPING_ARG });
    assert.ok(
      problems.some((p) => p.startsWith("examples/kubernetes/bad.yaml:17: apps/v1 Deployment w: spec.template.spec.containers[0].args[0]: must be string")),
      problems.join("\n"),
    );
    assert.ok(problems.some((p) => p.includes('quote it ("--lock=kubernetes:")')), problems.join("\n"));
  });

  test('leaseDurationSeconds: "15" names the field; in a Markdown block, the line in the Markdown file', async () => {
    const file = await checkYaml({ file: "lease.yaml", text: LEASE_WITH_STRING_DURATION });
    assert.deepEqual(file.problems, ['lease.yaml:7: coordination.k8s.io/v1 Lease l: spec.leaseDurationSeconds: must be integer, not the string "15" (drop the quotes for a number)']);

    const md = await problemsOfMarkdown(`# New page\n\nSome text.\n\n\`\`\`yaml\n${LEASE_WITH_STRING_DURATION}\`\`\`\n`);
    assert.deepEqual(md, ['docs/new.md:12: coordination.k8s.io/v1 Lease l: spec.leaseDurationSeconds: must be integer, not the string "15" (drop the quotes for a number)']);
  });

  test("a Markdown block with args as a mapping fails with the Markdown file's line", async () => {
    const md = await problemsOfMarkdown(`Intro\n\n\`\`\`yaml\n${DEPLOYMENT_WITH_MAPPING_ARG}\`\`\`\n`);
    assert.ok(md.some((p) => p.startsWith("docs/new.md:20: apps/v1 Deployment w: spec.template.spec.containers[0].args[0]: must be string")), md.join("\n"));
  });

  test("unknown fields fail, at any depth, also in maps' neighbours; maps (labels) take any key", async () => {
    const { problems } = await checkYaml({
      file: "x.yaml",
      text: "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  labels: { anything: goes }\n  lables: { typo: here }\nautomountServiceAccountTokens: false\n",
    });
    assert.deepEqual(problems, [
      "x.yaml:6: v1 ServiceAccount a: metadata.lables: unknown field (not in the Kubernetes schema)",
      "x.yaml:7: v1 ServiceAccount a: automountServiceAccountTokens: unknown field (not in the Kubernetes schema)",
    ]);
  });

  test("missing required fields, bad enums, unknown kinds and YAML errors are reported", async () => {
    const missing = await checkYaml({ file: "r.yaml", text: "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: { name: r }\nrules:\n  - resources: [leases]\n" });
    assert.deepEqual(missing.problems, ["r.yaml:5: rbac.authorization.k8s.io/v1 Role r: rules[0].verbs: required field is missing"]);
    const policy = await checkYaml({
      file: "p.yaml",
      text: "apiVersion: v1\nkind: Pod\nmetadata: { name: p }\nspec:\n  containers: [{ name: c, image: i, imagePullPolicy: Sometimes }]\n",
    });
    assert.match(policy.problems.join("\n"), /^p\.yaml:5: v1 Pod p: spec\.containers\[0\]\.imagePullPolicy: must be one of "Always", "IfNotPresent", "Never"/);
    const kind = await checkYaml({ file: "k.yaml", text: "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: { name: d }\n" });
    assert.deepEqual(kind.problems, ['k.yaml:1: apps/v1 Deploymnet d: Kubernetes has no built-in kind "Deploymnet" in "apps/v1"']);
    const broken = await checkYaml({ file: "b.yaml", text: "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n  name: b\n" });
    assert.match(broken.problems.join("\n"), /^b\.yaml:\d+: YAML does not parse: .*unique/i);
  });

  test("a Markdown block must be an object, a marked fragment, or marked as not Kubernetes", async () => {
    const unmarked = await problemsOfMarkdown("x\n\n```yaml\nports: [{ containerPort: 80 }]\n```\n");
    assert.match(unmarked.join("\n"), /^docs\/new\.md:4: not a Kubernetes object: apiVersion and kind are required/);

    const fragment = "<!-- k8s: io.k8s.api.core.v1.Container, partial -->\n```yaml\nports: [{ containerPort: 80 }]\nlivenessprobe: {}\n```\n";
    assert.deepEqual(await problemsOfMarkdown(fragment), ["docs/new.md:4: io.k8s.api.core.v1.Container: livenessprobe: unknown field (not in the Kubernetes schema)"]);
    const whole = "<!-- k8s: io.k8s.api.core.v1.Container -->\n```yaml\nports: [{ containerPort: 80 }]\n```\n";
    assert.deepEqual(await problemsOfMarkdown(whole), ["docs/new.md:3: io.k8s.api.core.v1.Container: name: required field is missing"]);

    const other = "<!-- not kubernetes: Prometheus rules -->\n```yaml\n- alert: X\n  expr: up == 0\n```\n";
    assert.deepEqual(await problemsOfMarkdown(other), []);
    const trap = "<!-- not kubernetes: a config -->\n```yaml\nargs:\n  - --lock=k8s:\n```\n";
    assert.match((await problemsOfMarkdown(trap)).join("\n"), /^docs\/new\.md:4: "--lock=k8s:" is read by YAML as a mapping key/);
    assert.match((await problemsOfMarkdown("<!-- k8s: nonsense -->\n```yaml\na: 1\n```\n")).join("\n"), /malformed marker/);
  });
});
