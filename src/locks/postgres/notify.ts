import { randomBytes } from "node:crypto";
import type { WatchHealth, WatchedRecord } from "../../election/lock.js";
import type { PostgresTarget } from "./config.js";
import { PgSession } from "./connection.js";

export type NotifyMode = "notify" | "poll";

export interface NotifierOptions {
  target: PostgresTarget;
  timeoutMs: number;
  channel: string;
  /** Notifications carry the lease name; others on the same table are ignored. */
  lease: string;
  mode: "auto" | "poll";
  pollIntervalMs: number;
  /** Sends a notification through the lock's own connection (the path real hand-overs take). */
  probe: (channel: string, payload: string) => Promise<void>;
  /** A value that changes whenever the lease row changes. */
  poll: () => Promise<string>;
  onMode: (mode: NotifyMode, why?: string) => void;
  /** A JSON payload (a renewal's row) as the record it announces; undefined if it is not one. */
  decode: (payload: unknown) => WatchedRecord | undefined;
}

interface Listener {
  onChange: (seen?: WatchedRecord) => void;
  onHealth?: ((health: WatchHealth) => void) | undefined;
}

/**
 * Fast hand-over for `watch`: LISTEN on a second connection (a session that LISTENs cannot run the
 * lock's statements in between without delaying notifications). The path is proven once with a probe
 * NOTIFY sent through the lock's own connection: behind a transaction-mode pooler LISTEN is accepted
 * but nothing arrives, and then we poll the row instead. While the LISTEN connection is down we poll
 * too, and after it is back the watchers are woken once, since a release may have been missed.
 * Correctness never depends on any of this: the elector keeps its retry loop.
 *
 * Health (`WatchHealth`) is `connected` while LISTEN is up and the probe proved the path: every write
 * notifies (renewals with the row), so waiters need not poll. Anything else is `disconnected`.
 */
export class Notifier {
  private readonly listeners = new Set<Listener>();
  private healthy = false;
  private session: PgSession | undefined;
  private started = false;
  private listening = false;
  private mode: NotifyMode | undefined;
  private probeToken: string | undefined;
  private probeSeen: (() => void) | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private lastSeen: string | undefined;
  private relisten: NodeJS.Timeout | undefined;
  private probeTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: NotifierOptions) {}

  add(onChange: (seen?: WatchedRecord) => void, signal: AbortSignal, onHealth?: (health: WatchHealth) => void): void {
    const listener: Listener = { onChange, onHealth };
    this.listeners.add(listener);
    if (onHealth !== undefined && this.healthy) {
      queueMicrotask(() => {
        if (this.listeners.has(listener) && this.healthy) onHealth("connected");
      });
    }
    signal.addEventListener(
      "abort",
      () => {
        this.listeners.delete(listener);
        this.updatePolling();
      },
      { once: true },
    );
    if (!this.started) {
      this.started = true;
      if (this.options.mode === "poll") this.setMode("poll", "notify=poll");
      else void this.listen();
    }
    this.updatePolling();
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
    this.updateHealth();
    this.updatePolling();
    if (this.relisten !== undefined) clearTimeout(this.relisten);
    if (this.probeTimer !== undefined) clearTimeout(this.probeTimer);
    await this.session?.close();
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const session = (this.session ??= this.newSession());
    try {
      await session.query("LISTEN", this.options.channel, `LISTEN "${this.options.channel.replace(/"/g, '""')}"`, []);
    } catch {
      this.retryListen();
      return;
    }
    this.listening = true;
    this.updatePolling();
    this.updateHealth();
    if (this.mode === undefined) void this.decide(session);
    // Anything published while we were not listening was missed.
    this.wake();
  }

  /** Probes the notification path once the lock's connection can send; polls if nothing arrives. */
  private async decide(session: PgSession): Promise<void> {
    const result = await this.runProbe();
    if (this.closed || this.session !== session || this.mode !== undefined) return;
    if (result === "unsent") {
      // The lock's connection is down: we cannot tell yet. We are listening meanwhile.
      this.probeTimer = setTimeout(() => void this.decide(session), 1000);
      this.probeTimer.unref();
      return;
    }
    if (result === "seen") {
      this.setMode("notify");
      return;
    }
    this.listening = false;
    this.setMode("poll", "a test notification did not arrive; a transaction-mode pooler may be in between");
    this.updateHealth();
    this.session = undefined;
    this.updatePolling();
    await session.close();
  }

  private newSession(): PgSession {
    const session = new PgSession(this.options.target, this.options.timeoutMs, "listen");
    session.onNotification = (channel, payload) => {
      if (channel !== this.options.channel) return;
      if (payload === this.probeToken) this.probeSeen?.();
      else if (payload === this.options.lease) this.wake();
      else if (payload.startsWith("{")) this.onRow(payload);
    };
    session.onLost = () => {
      this.listening = false;
      this.updateHealth();
      this.updatePolling();
      this.retryListen();
    };
    return session;
  }

  private retryListen(): void {
    if (this.closed || this.relisten !== undefined) return;
    // The session backs off its reconnects; this only keeps trying.
    this.relisten = setTimeout(() => {
      this.relisten = undefined;
      void this.listen();
    }, 200);
    this.relisten.unref();
  }

  /** Whether a NOTIFY sent through the lock's connection came back on the LISTEN connection. */
  private async runProbe(): Promise<"seen" | "lost" | "unsent"> {
    const token = `leader-run probe ${randomBytes(8).toString("hex")}`;
    this.probeToken = token;
    const waitMs = Math.max(1000, this.options.timeoutMs);
    const seen = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), waitMs);
      timer.unref();
      this.probeSeen = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
    try {
      await this.options.probe(this.options.channel, token);
    } catch {
      this.probeSeen?.();
      this.probeSeen = undefined;
      return "unsent";
    }
    const ok = await seen;
    this.probeSeen = undefined;
    return ok ? "seen" : "lost";
  }

  private setMode(mode: NotifyMode, why?: string): void {
    if (this.mode === mode) return;
    this.mode = mode;
    this.options.onMode(mode, why);
    this.updateHealth();
  }

  /** A renewal of this lease (other leases share the channel): observed as the row it carries. */
  private onRow(payload: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload);
    } catch {
      return;
    }
    if ((parsed as { lease?: unknown } | null)?.lease !== this.options.lease) return;
    const seen = this.options.decode(parsed);
    if (seen === undefined) this.wake();
    else this.wake(seen);
  }

  private updateHealth(): void {
    const healthy = !this.closed && this.listening && this.mode === "notify";
    if (healthy === this.healthy) return;
    this.healthy = healthy;
    for (const listener of [...this.listeners]) {
      try {
        listener.onHealth?.(healthy ? "connected" : "disconnected");
      } catch {
        // A listener's failure must not stop the others.
      }
    }
  }

  private updatePolling(): void {
    const want = !this.closed && this.listeners.size > 0 && !this.listening && this.mode !== undefined;
    if (want && this.pollTimer === undefined) {
      this.pollTimer = setInterval(() => void this.pollOnce(), this.options.pollIntervalMs);
      this.pollTimer.unref();
    } else if (!want && this.pollTimer !== undefined) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
      this.lastSeen = undefined;
    }
  }

  private async pollOnce(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const seen = await this.options.poll();
      if (this.lastSeen !== undefined && seen !== this.lastSeen) this.wake();
      this.lastSeen = seen;
    } catch {
      // Unreachable: the elector reports it; keep polling.
    } finally {
      this.polling = false;
    }
  }

  private wake(seen?: WatchedRecord): void {
    for (const listener of [...this.listeners]) {
      try {
        listener.onChange(seen === undefined ? undefined : { record: { ...seen.record }, raw: seen.raw });
      } catch {
        // A listener's failure must not stop the others.
      }
    }
  }
}
