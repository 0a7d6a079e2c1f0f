/**
 * A campaign cancelled from inside its own `acquire_failed` event (the CLI's --no-wait does exactly
 * this) must end at once, not after one more retry period: the signal is already aborted when the
 * elector starts its wait, so an abort listener added then would never fire.
 */
import assert from "node:assert/strict";
import { it } from "node:test";
import { LeaderElector } from "../../src/election/elector.js";
import { MemoryLock } from "../../src/locks/memory/index.js";
import { newEnv, S } from "./harness.js";

it("a campaign aborted by its own acquire_failed event returns without waiting a retry period", async () => {
  const env = newEnv();
  const holder = new LeaderElector({
    lock: new MemoryLock(env.store, "holder", { clock: env.clock }),
    leaseDuration: 15 * S,
    renewDeadline: 10 * S,
    retryPeriod: 2 * S,
    clock: env.clock,
    callbacks: { onStartedLeading: () => new Promise<void>(() => undefined), onStoppedLeading: () => undefined },
  });
  const holding = new AbortController();
  void holder.run(holding.signal);
  await env.clock.flush();
  assert.equal(holder.isLeading(), true);

  const campaign = new AbortController();
  let done = false;
  const standby = new LeaderElector({
    lock: new MemoryLock(env.store, "standby", { clock: env.clock }),
    leaseDuration: 15 * S,
    renewDeadline: 10 * S,
    retryPeriod: 2 * S,
    clock: env.clock,
    callbacks: { onStartedLeading: () => undefined, onStoppedLeading: () => undefined },
    onEvent: (event) => {
      if (event.type === "acquire_failed") campaign.abort();
    },
  });
  const before = env.clock.now();
  void standby.run(campaign.signal).then(() => {
    done = true;
  });
  await env.clock.flush();
  assert.equal(done, true, "run() should have returned without the clock moving");
  assert.equal(env.clock.now(), before);
  holding.abort();
});
