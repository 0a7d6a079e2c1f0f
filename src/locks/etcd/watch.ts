import type { IDuplexStream, IEvent, IWatchRequest, IWatchResponse, WatchClient } from "etcd3";

/**
 * One watch stream on a key prefix that passes on every batch of events (one revision's), and an empty
 * batch when the stream is (re)created, since changes may have been missed while it was down.
 * `onHealth(true)` once etcd confirmed the watch, `onHealth(false)` as soon as the stream fails.
 *
 * Written against etcd3's raw Watch RPC rather than its Watcher/WatchManager: that manager re-opens
 * failed streams with timers nobody can cancel or unref, and a stream open to a frozen etcd outlives
 * `client.close()`, both of which kept a process alive after the lock was closed. Here `close()`
 * cancels the stream itself, and the reconnect timer never holds the process.
 */
export class PrefixWatch {
  private stream: IDuplexStream<IWatchRequest, IWatchResponse> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;

  constructor(
    private readonly client: WatchClient,
    private readonly prefix: string,
    private readonly onEvents: (events: IEvent[]) => void,
    private readonly onHealth: (connected: boolean) => void,
  ) {}

  start(): void {
    void this.open();
  }

  close(): void {
    this.closed = true;
    this.onHealth(false);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const stream = this.stream;
    this.stream = undefined;
    try {
      stream?.cancel();
    } catch {
      // already gone
    }
  }

  private async open(): Promise<void> {
    if (this.closed) return;
    let stream: IDuplexStream<IWatchRequest, IWatchResponse>;
    try {
      stream = await this.client.watch();
    } catch {
      this.retry();
      return;
    }
    if (this.closed) {
      stream.cancel();
      return;
    }
    this.stream = stream;
    let ended = false;
    const fail = (): void => {
      if (ended) return;
      ended = true;
      this.onHealth(false);
      if (this.stream === stream) this.stream = undefined;
      try {
        stream.cancel();
      } catch {
        // already gone
      }
      this.retry();
    };
    stream.on("data", (response) => {
      if (response.canceled) {
        fail();
        return;
      }
      if (response.created) {
        this.attempt = 0;
        this.onHealth(true);
        this.onEvents([]);
        return;
      }
      // No events: a progress notification, nothing changed.
      if (response.events.length > 0) this.onEvents(response.events);
    });
    stream.on("error", fail);
    stream.on("end", fail);
    const key = Buffer.from(this.prefix);
    stream.write({ create_request: { key, range_end: prefixEnd(key) } });
  }

  /** 100 ms doubling to 1 s; unref'd: a watch alone never keeps the process running. */
  private retry(): void {
    if (this.closed) return;
    const delay = Math.min(1000, 100 * 2 ** Math.min(this.attempt, 10));
    this.attempt++;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.open();
    }, delay);
    this.timer.unref();
  }
}

/** etcd's range end for "every key starting with `key`": the key with its last byte below 0xff bumped. */
function prefixEnd(key: Buffer): Buffer {
  const end = Buffer.from(key);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] ?? 0xff) < 0xff) {
      end[i] = (end[i] ?? 0) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}
