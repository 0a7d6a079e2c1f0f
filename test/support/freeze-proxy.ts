/**
 * A loopback TCP proxy that can freeze: while frozen it accepts connections and keeps every socket
 * open but forwards nothing in either direction, like a server that stopped answering (SIGSTOP) or a
 * network path that black-holes packets. For servers that cannot be stopped with a signal (the
 * in-process Kubernetes test API server) and for faults a signal cannot make (`dropAll`: every
 * connection reset at once, then the server answers again).
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

interface Pair {
  client: Socket;
  upstream: Socket;
  /** Bytes held back while frozen, per direction, in arrival order. */
  toUpstream: Buffer[];
  toClient: Buffer[];
}

export class FreezeProxy {
  private frozen = false;
  private readonly pairs = new Set<Pair>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  /** Proxies 127.0.0.1:<port> to `targetHost:targetPort`. */
  static async start(targetPort: number, targetHost = "127.0.0.1"): Promise<FreezeProxy> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const address = server.address();
    if (typeof address !== "object" || address === null) throw new Error("proxy has no address");
    const proxy = new FreezeProxy(server, address.port);
    server.on("connection", (client) => proxy.accept(client, targetHost, targetPort));
    return proxy;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  /** Connections open now. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Stops forwarding; sockets stay open and new connections are accepted (and held). */
  freeze(): void {
    this.frozen = true;
  }

  /** Forwards again, held bytes first. */
  thaw(): void {
    this.frozen = false;
    for (const pair of this.pairs) this.flush(pair);
  }

  /** Resets every open connection (both sides), as a server restart would. */
  dropAll(): void {
    for (const pair of [...this.pairs]) this.drop(pair);
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, host: string, port: number): void {
    const upstream = createConnection({ host, port });
    const pair: Pair = { client, upstream, toUpstream: [], toClient: [] };
    this.pairs.add(pair);
    client.on("data", (chunk: Buffer) => this.forward(pair, chunk, "toUpstream"));
    upstream.on("data", (chunk: Buffer) => this.forward(pair, chunk, "toClient"));
    const end = (): void => this.drop(pair);
    for (const socket of [client, upstream]) {
      socket.on("error", end);
      socket.on("close", end);
    }
  }

  private forward(pair: Pair, chunk: Buffer, direction: "toUpstream" | "toClient"): void {
    if (this.frozen) {
      pair[direction].push(chunk);
      return;
    }
    (direction === "toUpstream" ? pair.upstream : pair.client).write(chunk);
  }

  private flush(pair: Pair): void {
    for (const chunk of pair.toUpstream.splice(0)) pair.upstream.write(chunk);
    for (const chunk of pair.toClient.splice(0)) pair.client.write(chunk);
  }

  private drop(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream.destroy();
  }
}
