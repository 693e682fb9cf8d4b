// A TCP proxy in front of the database server that can cut the network under a test:
// - freeze(): nothing is forwarded either way and no socket is closed, as when a link silently
//   drops every packet; new connections are accepted but get nothing through either;
// - drop(): every connection is destroyed at once (both ends), as when a middlebox resets them;
// - blackhole(): the connections open now go silent for good (nothing forwarded, nothing
//   closed), while new connections work: an idle link a middlebox forgot, or a failover;
// - resume(): forwarding starts again (what was written meanwhile is delivered then, and a side
//   that closed meanwhile is closed on the other side then);
// - close(): drops everything and stops listening.
import { createServer, connect, type Server, type Socket } from 'node:net';

interface Link {
  readonly client: Socket;
  readonly upstream: Socket;
}

export class TcpProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #links = new Set<Link>();
  /** Links silenced by blackhole(): never resumed. */
  readonly #dead = new Set<Link>();
  #frozen = false;
  /** Connections accepted since the proxy started. */
  accepted = 0;

  private constructor(server: Server, target: { host: string; port: number }) {
    this.#server = server;
    this.#target = target;
    server.on('connection', (client) => this.#accept(client));
  }

  /** Listens on 127.0.0.1 (a free port) and forwards to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = createServer({ pauseOnConnect: true });
    const proxy = new TcpProxy(server, target);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** The proxy's port on 127.0.0.1. */
  get port(): number {
    const address = this.#server.address();
    if (typeof address !== 'object' || address === null) throw new Error('proxy not listening');
    return address.port;
  }

  get frozen(): boolean {
    return this.#frozen;
  }

  /** Sockets of the proxy (both ends of every link) not yet closed. */
  get openSockets(): number {
    let open = 0;
    for (const { client, upstream } of this.#links) open += Number(!client.destroyed) + Number(!upstream.destroyed);
    return open;
  }

  freeze(): void {
    this.#frozen = true;
    for (const { client, upstream } of this.#links) {
      client.pause();
      upstream.pause();
    }
  }

  blackhole(): void {
    for (const link of this.#links) {
      this.#dead.add(link);
      link.client.pause();
      link.upstream.pause();
    }
  }

  resume(): void {
    this.#frozen = false;
    for (const link of [...this.#links]) this.#flow(link);
  }

  /** Destroys every connection now (the proxy keeps accepting new ones). */
  drop(): void {
    for (const { client, upstream } of this.#links) {
      client.destroy();
      upstream.destroy();
    }
    this.#links.clear();
    this.#dead.clear();
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.drop();
    await closed;
  }

  #accept(client: Socket): void {
    this.accepted++;
    const upstream = connect({ host: this.#target.host, port: this.#target.port });
    upstream.pause();
    const link: Link = { client, upstream };
    this.#links.add(link);
    const pipe = (from: Socket, to: Socket) => {
      from.on('data', (chunk: Buffer) => {
        // Data for a side that is gone resets the sender, as the peer's kernel would.
        if (to.destroyed || to.writableEnded) return void from.destroy();
        to.write(chunk);
      });
      // A side that ends passes its end on after what it sent (the events of a paused socket
      // wait for resume, so nothing passes during a freeze); a reset resets the other side.
      from.on('end', () => to.end());
      from.on('error', () => {});
      from.on('close', (hadError: boolean) => {
        if (hadError && !this.#frozen) to.destroy();
        if (client.destroyed && upstream.destroyed) this.#links.delete(link);
      });
    };
    pipe(client, upstream);
    pipe(upstream, client);
    this.#flow(link);
  }

  /** Starts (or keeps) a link flowing unless frozen; finishes links that closed meanwhile. */
  #flow(link: Link): void {
    if (this.#frozen || this.#dead.has(link)) return;
    const { client, upstream } = link;
    if (client.destroyed && !upstream.destroyed) upstream.end();
    if (upstream.destroyed && !client.destroyed) client.end();
    client.resume();
    upstream.resume();
    if (client.destroyed && upstream.destroyed) this.#links.delete(link);
  }
}
