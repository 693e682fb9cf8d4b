// A TCP proxy in front of the database server that can cut the network under a test:
// - freeze(): nothing is forwarded either way and no socket is closed, as when a link silently
//   drops every packet; new connections are accepted but get nothing through either;
// - drop(): every connection is destroyed at once (both ends), as when a middlebox resets them;
// - blackhole(): the connections open now go silent for good (nothing forwarded, nothing
//   closed), while new connections work: an idle link a middlebox forgot, or a failover;
// - resume(): forwarding starts again (what was written meanwhile is delivered then, and a side
//   that closed meanwhile is closed on the other side then);
// - stallNew(): connections opened from now on are accepted but get nothing through (until
//   stallNew(false)), while those already open carry on, as when a server is too slow to take
//   new connections;
// - throttle(bytesPerSecond): what clients send reaches the server at that rate at most (per
//   connection), as over a slow uplink; a client that sends faster is slowed down by TCP
//   backpressure once the link's buffer is full; throttle(null) lifts it;
// - refuseStartup(text): a connection opened from now on whose startup message holds `text` (an
//   application_name, say) is closed before anything reaches the server, as a server refusing
//   that login would be seen by the client (until refuseStartup(null));
// - splitReplies(bytes): what the server sends reaches the client in pieces of at most that many
//   bytes, each written a millisecond after the last, so that the client reads messages cut at
//   any byte, a header included (until splitReplies(null); what is queued still trickles out first);
// - close(): drops everything and stops listening.
import { createServer, connect, type Server, type Socket } from 'node:net';

interface Link {
  readonly client: Socket;
  readonly upstream: Socket;
  /** Bytes from the client waiting for the throttle, oldest first. */
  readonly held: Buffer[];
  heldBytes: number;
  /** The client ended while bytes were held: pass the end on after them. */
  endHeld: boolean;
  /** The throttle stopped reading the client (its buffer is full). */
  backedUp: boolean;
  /** Accepted during stallNew(): nothing passes until it is lifted. */
  stalled: boolean;
  /** Its client's first bytes (the startup message) were looked at by refuseStartup. */
  checked: boolean;
  /** splitReplies: pieces for the client not written yet, in order. */
  readonly pieces: Buffer[];
  trickling: boolean;
}

/** Bytes a throttled link holds before it stops reading its client (a full socket buffer). */
const THROTTLE_BUFFER = 16384;
const THROTTLE_TICK_MS = 20;

export class TcpProxy {
  readonly #server: Server;
  readonly #target: { host: string; port: number };
  readonly #links = new Set<Link>();
  /** Links silenced by blackhole(): never resumed. */
  readonly #dead = new Set<Link>();
  #frozen = false;
  #rate: number | null = null;
  #stallNew = false;
  /** refuseStartup: the bytes that get a new connection closed, or null. */
  #refuse: Buffer | null = null;
  /** splitReplies: the largest piece, or null. */
  #split: number | null = null;
  #ticker: NodeJS.Timeout | null = null;
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

  refuseStartup(text: string | null): void {
    this.#refuse = text === null ? null : Buffer.from(text);
  }

  stallNew(stall = true): void {
    this.#stallNew = stall;
    if (stall) return;
    for (const link of [...this.#links]) {
      link.stalled = false;
      this.#flow(link);
    }
  }

  /** Forwards what clients send at `bytesPerSecond` at most (each connection); null: at full speed. */
  throttle(bytesPerSecond: number | null): void {
    this.#rate = bytesPerSecond;
    this.#release();
  }

  /** The server's bytes reach clients in pieces of at most `bytes` (null: as they come). */
  splitReplies(bytes: number | null): void {
    this.#split = bytes;
  }

  /** Connection options that reach the database of `url` through this proxy (its user, password and database). */
  via(url: string): { host: string; port: number; user: string; password: string; database: string } {
    const parsed = new URL(url);
    return {
      host: '127.0.0.1',
      port: this.port,
      user: decodeURIComponent(parsed.username),
      password: decodeURIComponent(parsed.password),
      database: decodeURIComponent(parsed.pathname.slice(1)),
    };
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
    this.#rate = null;
    if (this.#ticker) clearInterval(this.#ticker);
    this.#ticker = null;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.drop();
    await closed;
  }

  #accept(client: Socket): void {
    this.accepted++;
    const upstream = connect({ host: this.#target.host, port: this.#target.port });
    upstream.pause();
    const link: Link = {
      client,
      upstream,
      held: [],
      heldBytes: 0,
      endHeld: false,
      backedUp: false,
      stalled: this.#stallNew,
      checked: false,
      pieces: [],
      trickling: false,
    };
    this.#links.add(link);
    const pipe = (from: Socket, to: Socket) => {
      from.on('data', (chunk: Buffer) => {
        // Data for a side that is gone resets the sender, as the peer's kernel would.
        if (to.destroyed || to.writableEnded) return void from.destroy();
        if (from === client && !link.checked) {
          link.checked = true;
          if (this.#refuse !== null && chunk.includes(this.#refuse)) {
            client.destroy();
            return void upstream.destroy();
          }
        }
        if (from === client && (this.#rate !== null || link.heldBytes > 0)) return this.#hold(link, chunk);
        if (from === upstream && (this.#split !== null || link.pieces.length > 0)) return this.#trickle(link, chunk);
        to.write(chunk);
      });
      // A side that ends passes its end on after what it sent (the events of a paused socket
      // wait for resume, so nothing passes during a freeze); a reset resets the other side.
      from.on('end', () => {
        if (from === client && link.heldBytes > 0) link.endHeld = true;
        else to.end();
      });
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

  /** Queues `chunk` for the client in pieces (splitReplies), written one a millisecond. */
  #trickle(link: Link, chunk: Buffer): void {
    const size = this.#split ?? chunk.length;
    for (let at = 0; at < chunk.length; at += size) link.pieces.push(chunk.subarray(at, at + size));
    if (link.trickling) return;
    link.trickling = true;
    const next = () => {
      const piece = link.pieces.shift();
      if (!piece) {
        link.trickling = false;
        return;
      }
      if (!link.client.destroyed) link.client.write(piece);
      setTimeout(next, 1);
    };
    next();
  }

  #hold(link: Link, chunk: Buffer): void {
    link.held.push(chunk);
    link.heldBytes += chunk.length;
    if (link.heldBytes >= THROTTLE_BUFFER) {
      link.backedUp = true;
      link.client.pause();
    }
    if (!this.#ticker) {
      this.#ticker = setInterval(() => this.#release(), THROTTLE_TICK_MS);
      this.#ticker.unref();
    }
  }

  /** Passes on what the throttle allows since the last tick (everything once it is lifted). */
  #release(): void {
    if (this.#frozen) return;
    const allowance = this.#rate === null ? Infinity : Math.max(1, Math.round((this.#rate * THROTTLE_TICK_MS) / 1000));
    let holding = false;
    for (const link of this.#links) {
      const { client, upstream, held } = link;
      for (let left = allowance; left > 0 && held.length > 0;) {
        const chunk = held[0]!;
        const part = chunk.length <= left ? chunk : chunk.subarray(0, left);
        if (part === chunk) held.shift();
        else held[0] = chunk.subarray(left);
        link.heldBytes -= part.length;
        left -= part.length;
        if (!upstream.destroyed) upstream.write(part);
      }
      if (link.heldBytes < THROTTLE_BUFFER && link.backedUp) {
        link.backedUp = false;
        if (!client.destroyed) client.resume();
      }
      if (link.heldBytes === 0 && link.endHeld) {
        link.endHeld = false;
        upstream.end();
      }
      holding ||= link.heldBytes > 0;
    }
    if (!holding && this.#ticker) {
      clearInterval(this.#ticker);
      this.#ticker = null;
    }
  }

  /** Starts (or keeps) a link flowing unless frozen; finishes links that closed meanwhile. */
  #flow(link: Link): void {
    if (this.#frozen || this.#dead.has(link) || link.stalled) return;
    const { client, upstream } = link;
    if (client.destroyed && !upstream.destroyed) upstream.end();
    if (upstream.destroyed && !client.destroyed) client.end();
    client.resume();
    upstream.resume();
    if (client.destroyed && upstream.destroyed) this.#links.delete(link);
  }
}
