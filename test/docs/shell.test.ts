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
  const backends = {
    redis: { port: 6390, password: "secret" },
    kubeconfig: "/k/config",
    etcd: { endpoints: ["127.0.0.1:2400"], user: "app", password: "pw" },
    postgres: { port: 5440, password: "pgpw" },
  };

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

  test("etcd hosts become the test member(s) and the docs' password placeholder the test user's password", () => {
    const s = substitute("LEADER_RUN_ETCD_PASSWORD=… leader-run --lock etcd://app@10.0.0.1:2379,10.0.0.2:2379/p -- ./worker", "/sb", backends);
    assert.equal(s.text, "LEADER_RUN_ETCD_PASSWORD=pw leader-run --lock etcd://app@127.0.0.1:2400,127.0.0.1:2400/p -- ./worker");
    assert.deepEqual(s.needs, ["etcd"]);
    const ctl = substitute("etcdctl get --prefix leader-run/", "/sb", backends);
    assert.equal(ctl.text, "etcdctl get --prefix leader-run/");
    assert.equal(ctl.env.ETCDCTL_ENDPOINTS, "http://127.0.0.1:2400");
    assert.equal(ctl.env.ETCDCTL_USER, "app:pw");
  });

  test("a postgres:// host and psql -h become the test server; the password comes through PGPASSWORD", () => {
    const s = substitute("leader-run status --lock postgres://jobs@db.internal/app --name nightly", "/sb", backends);
    assert.equal(s.text, "leader-run status --lock postgres://jobs@127.0.0.1:5440/app --name nightly");
    assert.deepEqual(s.env, { PGPASSWORD: "pgpw" });
    assert.deepEqual(s.needs, ["postgres"]);
    const p = substitute("psql -h db.internal -U jobs app -c 'table leader_run_leases'", "/sb", backends);
    assert.equal(p.text, "psql -h 127.0.0.1 -p 5440 -U jobs app -c 'table leader_run_leases'");
    assert.deepEqual(p.needs, ["postgres"]);
  });
});
