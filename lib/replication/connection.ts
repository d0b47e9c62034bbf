/**
 * A replication client's connection as every phase of a session uses it: one reader of the
 * client's messages, one writer to the socket, and the move onto TLS.
 *
 * @module
 */

import { concatBytes, writeAll } from "../_io.ts";
import type { FrontendMessage, StartupPacket } from "../pgwire/message_reader.ts";
import { MessageReader } from "../pgwire/message_reader.ts";
import type { TlsBridge } from "../pgwire/tls_bridge.ts";

/** Largest body accepted per message type; longer ones are refused before they are buffered. */
function maxLength(type: string): number {
  switch (type) {
    case "Q":
      return 1 << 20;
    case "d":
      return 1 << 16;
    default:
      return 10000;
  }
}

/**
 * The reader's buffer: a client's messages are small (startup, commands, status updates of a few
 * dozen bytes), and every idle connection holds its buffer in a pending read. A long query grows
 * it for as long as it takes, then goes back.
 */
const READER = { size: 512, keep: 1 << 16 };

/** A peer's address and port. */
export interface PeerAddress {
  /** IP address. */
  address: string;
  /** Port. */
  port: number;
}

/**
 * The client's connection. All writes go through one writer, in order, so keepalives and
 * replies from the reader interleave with WAL messages whole.
 *
 * @example
 * ```ts ignore
 * import { ClientConnection } from "./connection.ts";
 * const client = new ClientConnection(conn);
 * const msg = await client.readMessage();
 * ```
 */
export class ClientConnection {
  /** The client's address: the outer socket's when TLS is bridged through loopback. */
  readonly remote: PeerAddress;
  #conn: Deno.Conn;
  #reader: MessageReader;
  /** The last write queued; the next starts once it has settled. */
  #tail: Promise<void> = Promise.resolve();
  /** Writes queued and not settled: while any is, a new one queues behind them. */
  #queued = 0;
  /** Why a write failed: no later write may go out after a message cut short. */
  #failure: { error: unknown } | undefined;
  #ssl: boolean;
  #closeTls: (() => void) | undefined;
  #closed = false;

  /**
   * @param conn The accepted connection (plain or TLS).
   * @param options `remote` overrides the peer address; `ssl` says the connection is TLS already.
   */
  constructor(conn: Deno.Conn, options: { remote?: PeerAddress; ssl?: boolean } = {}) {
    this.#conn = conn;
    this.#reader = new MessageReader(conn, READER);
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.remote = options.remote ?? { address: addr.hostname ?? "", port: addr.port ?? 0 };
    this.#ssl = options.ssl ?? false;
  }

  /** Whether the connection is encrypted. */
  get ssl(): boolean {
    return this.#ssl;
  }

  /** Whether the server closed the connection. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes received but not yet read as a packet. */
  get buffered(): number {
    return this.#reader.buffered;
  }

  /** The first byte the client sends, without consuming it; `null` at EOF. */
  peekByte(): Promise<number | null> {
    return this.#reader.peekByte();
  }

  /** The next startup-phase packet; `null` at EOF. */
  readStartup(): Promise<StartupPacket | null> {
    return this.#reader.readStartup();
  }

  /** The client's next message, refused when longer than its type allows; `null` at EOF. */
  readMessage(): Promise<FrontendMessage | null> {
    return this.#reader.readMessage(maxLength);
  }

  /**
   * Writes one message; settles once the socket has taken it. Writes go out in the order asked,
   * each straight to the socket, in as few `write`s as it takes, with no stream or writer around
   * them (`conn.writable` cost some 7 µs more of CPU a 512 kB write, and 10 kB a connection).
   */
  write(message: Uint8Array): Promise<void> {
    const p = this.#queued++ === 0 ? this.#put(message) : this.#tail.then(() => this.#put(message));
    this.#tail = p.then(this.#settled, this.#settled);
    return p;
  }

  /** A write settled: the next may go straight to the socket once none is queued. */
  #settled = (): void => {
    this.#queued--;
  };

  /** Writes messages as one write, so they reach the client together. */
  send(...messages: Uint8Array[]): Promise<void> {
    return this.write(messages.length === 1 ? messages[0]! : concatBytes(...messages));
  }

  async #put(message: Uint8Array): Promise<void> {
    if (this.#failure) throw this.#failure.error;
    try {
      await writeAll(this.#conn, message);
    } catch (e) {
      this.#failure = { error: e };
      throw e;
    }
  }

  /**
   * Moves onto TLS bridged over the raw socket: the bytes already received (`prefix`, the
   * ClientHello of a direct TLS connection) go first.
   *
   * @returns The ALPN protocol the client chose, if any.
   */
  async startTls(bridge: TlsBridge, prefix: Uint8Array): Promise<string | null> {
    // The answer to SSLRequest must be on the wire before the handshake takes the socket.
    await this.#tail;
    const { conn, alpnProtocol, close } = await bridge.upgrade(this.#conn, prefix);
    this.#closeTls = close;
    this.#conn = conn;
    this.#reader = new MessageReader(conn, READER);
    this.#ssl = true;
    return alpnProtocol;
  }

  /** The bytes received but not yet read, taken out of the reader. */
  takeBuffered(): Uint8Array {
    return this.#reader.takeBuffered();
  }

  /** Closes the socket now; a second call does nothing. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#closeTls?.();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}
