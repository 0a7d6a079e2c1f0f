"use strict";
/*
 * leader-run's orphan guard. Node has no parent-death signal, so leader-run starts this tiny process
 * with a pipe on its stdin. The kernel closes that pipe however leader-run ends (exit, crash, SIGKILL,
 * OOM kill); on end-of-file this process stops every process group still registered, so a child can
 * never outlive leader-run until its lease expires and run next to a standby's.
 *
 * Plain CommonJS with no imports: it must start fast and run unchanged from src/ (under tsx) and
 * from dist/. Protocol, one line each on stdin:
 *   watch <pgid> <signal> <graceMs>   stop this group if leader-run dies
 *   unwatch <pgid>                    the group is gone (leader-run reaped it)
 * argv: <leader-run pid> <stderr format: text|json|quiet>
 */

const parentPid = Number(process.argv[2]);
const stderrFormat = process.argv[3] || "text";
const POLL_MS = 50;
const IDLE_POLL_MS = 1000;
/** After SIGKILL, how long to wait for the group to vanish before giving up (bounded, never hangs). */
const REAP_BOUND_MS = 5000;

/** pgid -> { signal, graceMs } */
const groups = new Map();

// Leader-run's own signals (Ctrl-C to its terminal group, systemd's SIGTERM to the whole cgroup)
// must not take the guard down first: it only ever exits when its pipe closes or its groups are gone.
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGPIPE"]) {
  process.on(sig, () => {});
}
// A dead log reader must never stop the kill path.
process.stderr.on("error", () => {});

function report(event, fields, text) {
  if (stderrFormat === "quiet") return;
  try {
    if (stderrFormat === "json") {
      const line = { time: new Date().toISOString(), level: "warn", event, ...fields, msg: text };
      process.stderr.write(JSON.stringify(line) + "\n");
    } else {
      process.stderr.write(`leader-run watchdog: ${text}\n`);
    }
  } catch {
    // nothing sensible left to do
  }
}

function exists(pgid) {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return err.code === "EPERM";
  }
}

function send(pgid, signal) {
  try {
    process.kill(-pgid, signal);
  } catch {
    // gone already, or not ours to signal
  }
}

function onLine(line) {
  const [verb, pgidText, signal, graceText] = line.trim().split(/\s+/);
  const pgid = Number(pgidText);
  if (!Number.isSafeInteger(pgid) || pgid <= 1) return;
  if (verb === "watch") {
    const graceMs = Number(graceText);
    groups.set(pgid, { signal: signal || "SIGTERM", graceMs: Number.isFinite(graceMs) && graceMs >= 0 ? graceMs : 0 });
  } else if (verb === "unwatch") {
    groups.delete(pgid);
  }
}

let buffered = "";
let parentGone = false;
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  buffered += chunk;
  let nl;
  while ((nl = buffered.indexOf("\n")) >= 0) {
    onLine(buffered.slice(0, nl));
    buffered = buffered.slice(nl + 1);
  }
});
process.stdin.on("end", onParentGone);
process.stdin.on("error", onParentGone);

// While leader-run lives, forget groups that ended without an unwatch, so a recycled pid can never be
// mistaken for the child's group later.
const idle = setInterval(() => {
  for (const pgid of groups.keys()) if (!exists(pgid)) groups.delete(pgid);
}, IDLE_POLL_MS);
idle.unref();

function onParentGone() {
  if (parentGone) return;
  parentGone = true;
  clearInterval(idle);
  const start = Date.now();
  const pending = new Map();
  for (const [pgid, { signal, graceMs }] of groups) {
    if (!exists(pgid)) continue;
    send(pgid, signal);
    // A stopped (SIGSTOP/SIGTSTP) process only acts on the signal once continued, as systemd does.
    send(pgid, "SIGCONT");
    pending.set(pgid, { killAt: start + graceMs, killed: false });
    report(
      "watchdog_killing",
      { parent_pid: parentPid, pgid, signal, grace_ms: graceMs },
      `leader-run (pid ${parentPid}) is gone; sent ${signal} to process group ${pgid}, SIGKILL in ${graceMs} ms`,
    );
  }
  if (pending.size === 0) process.exit(0);
  const tick = setInterval(() => {
    const now = Date.now();
    for (const [pgid, state] of pending) {
      if (!exists(pgid)) {
        pending.delete(pgid);
      } else if (!state.killed && now >= state.killAt) {
        send(pgid, "SIGKILL");
        state.killed = true;
        report("watchdog_killing", { parent_pid: parentPid, pgid, signal: "SIGKILL" }, `sent SIGKILL to process group ${pgid}`);
      } else if (state.killed && now >= state.killAt + REAP_BOUND_MS) {
        report("watchdog_gave_up", { parent_pid: parentPid, pgid }, `process group ${pgid} survived SIGKILL; giving up`);
        pending.delete(pgid);
      }
    }
    if (pending.size === 0) {
      clearInterval(tick);
      process.exit(0);
    }
  }, POLL_MS);
}
