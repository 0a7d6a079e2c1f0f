/** The docs-command harness itself: which lines are commands, and that only the lease's location changes. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { codeBlocks } from "./support/markdown.js";
import { commandsOf, notRunReason, substitute } from "./support/shell.js";

describe("documented commands: extraction", () => {
  test("sh blocks: every non-comment line, with its continuation lines, and its line in the Markdown file", () => {
    const [block] = codeBlocks("docs/x.md", "Intro\n\n```sh\n# a comment\nleader-run --no-wait \\\n  -- ./backup.sh\n\nleader-run status\n```\n");
    assert.ok(block);
    assert.deepEqual(commandsOf(block), [
      { file: "docs/x.md", line: 5, text: "leader-run --no-wait \\\n  -- ./backup.sh" },
      { file: "docs/x.md", line: 8, text: "leader-run status" },
    ]);
  });

  test("console blocks: only the $ lines; list-item blocks are de-indented; markers are read", () => {
    const [block] = codeBlocks("README.md", "- item\n\n  <!-- not run: needs a cluster -->\n  ```console\n  $ leader-run status\n  holder: a\n  ```\n");
    assert.ok(block);
    assert.deepEqual(commandsOf(block).map((c) => [c.line, c.text]), [[5, "leader-run status"]]);
    assert.equal(notRunReason(block), "needs a cluster");
  });
});

describe("documented commands: substitution", () => {
  const backends = { redis: { port: 6390, password: "secret" }, kubeconfig: "/k/config" };

  test("a command naming no lock gets a sandboxed file lock through the environment, text unchanged", () => {
    const s = substitute("leader-run --no-wait -- ./backup.sh", "/sb", backends);
    assert.equal(s.text, "leader-run --no-wait -- ./backup.sh");
    assert.deepEqual(s.env, { LEADER_RUN_LOCK: "file:/sb/locks" });
  });

  test("file: paths move into the sandbox", () => {
    const s = substitute("leader-run --lock file:/var/lib/myjob/locks -- ./x.sh", "/sb", backends);
    assert.equal(s.text, "leader-run --lock file:/sb/file-locks/var/lib/myjob/locks -- ./x.sh");
    assert.deepEqual(s.env, {});
  });

  test("Redis hosts become the test server, keeping user, password and query; a password_file becomes a file", () => {
    const a = substitute("LEADER_RUN_LOCK='redis://:secret@redis.internal:6379' leader-run -- ./n.sh", "/sb", backends);
    assert.equal(a.text, "LEADER_RUN_LOCK='redis://:secret@127.0.0.1:6390' leader-run -- ./n.sh");
    assert.deepEqual(a.needs, ["redis"]);
    assert.deepEqual(a.env, {});
    const noRedis = substitute("leader-run --lock redis://h:1 -- x", "/sb", {});
    assert.equal(noRedis.text, "leader-run --lock redis://h:1 -- x", "left as written when there is no server (the test is skipped)");
  });

  test("a Kubernetes lock keeps its URL and gets the test API server through KUBECONFIG", () => {
    const s = substitute("leader-run --lock k8s: --name n -- ./r.sh", "/sb", backends);
    assert.equal(s.text, "leader-run --lock k8s: --name n -- ./r.sh");
    assert.deepEqual(s.env, { KUBECONFIG: "/k/config" });
    assert.deepEqual(s.needs, ["kubernetes"]);
  });
});
