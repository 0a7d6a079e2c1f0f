import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { commandSlug, defaultIdentity, leaseNameProblem, readableSlug } from "../../src/cli/slug.js";

const K8S_NAME = /^[a-z0-9](?:[-a-z0-9]*[a-z0-9])?$/;

describe("commandSlug: the default lease name", () => {
  it("keeps `node cron.js` exactly `node-cron-js`", () => {
    assert.equal(commandSlug(["node", "cron.js"]), "node-cron-js");
  });

  it("is readable and hash-free for plain command lines", () => {
    assert.equal(commandSlug(["/usr/local/bin/backup.sh", "--full"]), "usr-local-bin-backup-sh-full");
    assert.equal(commandSlug(["npm", "run", "build:prod"]), "npm-run-build-prod");
    assert.equal(commandSlug(["node", "job.js", "--mode=full", "--at", "user@host", "a,b", "c++"]), "node-job-js-mode-full-at-user-host-a-b-c");
  });

  it("is the same for --shell's single string and the argv form", () => {
    assert.equal(commandSlug(["node cron.js"]), commandSlug(["node", "cron.js"]));
  });

  it("is stable: the same command always gives the same name", () => {
    const cmd = ["sh", "-c", "echo $HOME > /tmp/Out"];
    assert.equal(commandSlug(cmd), commandSlug([...cmd]));
    assert.equal(commandSlug(cmd), "sh-c-echo-home-tmp-out-" + commandSlug(cmd).slice(-8));
  });

  it("adds a hash when case or special characters were dropped, so such commands do not collide", () => {
    const a = commandSlug(["node", "Cron.js"]);
    const b = commandSlug(["node", "cron.js"]);
    assert.notEqual(a, b);
    assert.match(a, /^node-cron-js-[0-9a-f]{8}$/);
    const c = commandSlug(["echo", "$A"]);
    const d = commandSlug(["echo", "$B"]);
    assert.match(c, /^echo-a-[0-9a-f]{8}$/);
    assert.notEqual(c.slice(-8), d.slice(-8));
  });

  it("cuts long commands to 63 characters with a hash, distinct for different tails", () => {
    const long1 = commandSlug(["node", "x".repeat(100), "one"]);
    const long2 = commandSlug(["node", "x".repeat(100), "two"]);
    assert.equal(long1.length, 63);
    assert.notEqual(long1, long2);
    assert.match(long1, /^node-x+-[0-9a-f]{8}$/);
  });

  it("names a command with nothing readable cmd-<hash>", () => {
    assert.match(commandSlug(["$$"]), /^cmd-[0-9a-f]{8}$/);
    assert.match(commandSlug(["été"]), /^t-[0-9a-f]{8}$/);
  });

  it("always produces a valid Kubernetes object name and label value", () => {
    const samples = [["node", "cron.js"], ["--"], ["-x-"], ["Ünïcødé", "🚀"], ["a".repeat(300)], ["x", "-", "y"], [".hidden"], ["UPPER_case"]];
    for (const s of samples) {
      const name = commandSlug(s);
      assert.match(name, K8S_NAME, JSON.stringify(s));
      assert.ok(name.length <= 63, name);
      assert.equal(leaseNameProblem(name), undefined);
    }
  });
});

describe("leaseNameProblem: --name validation", () => {
  it("accepts DNS-1123 subdomains", () => {
    for (const n of ["a", "node-cron-js", "my.job.v2", "0abc"]) assert.equal(leaseNameProblem(n), undefined, n);
  });
  it("rejects anything else with the reason", () => {
    assert.match(leaseNameProblem("") ?? "", /empty/);
    assert.match(leaseNameProblem("My_Job") ?? "", /Kubernetes object name/);
    assert.match(leaseNameProblem("-a") ?? "", /Kubernetes object name/);
    assert.match(leaseNameProblem("a..b") ?? "", /Kubernetes object name/);
    assert.match(leaseNameProblem("a/b") ?? "", /Kubernetes object name/);
    assert.match(leaseNameProblem("a".repeat(254)) ?? "", /253/);
  });
  it("readableSlug suggests a fix", () => {
    assert.equal(readableSlug("My_Job"), "my-job");
  });
});

describe("defaultIdentity", () => {
  it("is <POD_NAME>_<8 hex> when POD_NAME is set", () => {
    assert.match(defaultIdentity({ POD_NAME: "web-7d9f-abcde" }), /^web-7d9f-abcde_[0-9a-f]{8}$/);
  });
  it("falls back to the hostname and differs per call (unique per process)", () => {
    const a = defaultIdentity({});
    const b = defaultIdentity({});
    assert.match(a, /^.+_[0-9a-f]{8}$/);
    assert.notEqual(a, b);
  });
});
