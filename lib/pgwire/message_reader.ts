/**
 * Reads frontend messages from a connection: startup-phase packets (no type byte) and typed
 * messages, with every length checked before anything is allocated.
 *
 * @module
 */

import { PgError, SqlState } from "./error.ts";

/** `MAX_STARTUP_PACKET_LENGTH` of `pqcomm.h`. */
export const MAX_STARTUP_PACKET_LENGTH = 10000;

/** The minimal connection surface the reader needs. */
export interface ByteSource {
  /** Reads into `p`; resolves to the count read, or `null` at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
}

/** A startup-phase packet: `Int32 length | Int32 code | body`. */
export interface StartupPacket {
  /** The protocol version or request code (SSLRequest, CancelRequest, …). */
  code: number;
  /** The bytes after the code. */
  body: Uint8Array;
}

/** A typed frontend message. */
export interface FrontendMessage {
  /** The type byte as a one-character string, e.g. `"Q"`. */
  type: string;
  /** The bytes after the length word. */
  body: Uint8Array;
}

/** Options of {@linkcode MessageReader}. */
export interface MessageReaderOptions {
  /** Bytes read at a time until a message needs more. Default 16384. */
  size?: number;
  /** A buffer grown past this many bytes is dropped once drained. Default: kept. */
  keep?: number;
}

const EMPTY = new Uint8Array(0);

/** Thrown when the peer closed the connection mid-message or between messages. */
export class ConnectionClosed extends Error {
  constructor() {
    super("connection closed by client");
    this.name = "ConnectionClosed";
  }
}

/**
 * A buffered reader of PostgreSQL frontend messages over a {@linkcode ByteSource}.
 *
 * @example
 * ```ts
 * import { MessageReader } from "./message_reader.ts";
 * import assert from "node:assert/strict";
 * const bytes = new Uint8Array([0x58, 0, 0, 0, 4]); // Terminate
 * let done = false;
 * const reader = new MessageReader({
 *   read(p) {
 *     if (done) return Promise.resolve(null);
 *     done = true;
 *     p.set(bytes);
 *     return Promise.resolve(bytes.length);
 *   },
 * });
 * const msg = await reader.readMessage(() => 1024);
 * assert.equal(msg?.type, "X");
 * ```
 */
export class MessageReader {
  #src: ByteSource;
  #size: number;
  #keep: number;
  #buf: Uint8Array = EMPTY;
  #start = 0;
  #end = 0;

  /**
   * @param src Where the bytes come from.
   * @param options `size`: bytes read at a time until a message needs more (default 16384).
   * `keep`: a buffer grown past this is dropped once drained, back to `size` (default: kept),
   * so one long message does not pin its buffer for the rest of the connection.
   */
  constructor(src: ByteSource, options: MessageReaderOptions = {}) {
    this.#src = src;
    this.#size = options.size ?? 16384;
    this.#keep = options.keep ?? Infinity;
  }

  /** Bytes already received but not yet consumed. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  async #fill(n: number): Promise<boolean> {
    if (this.#end - this.#start >= n) return true;
    if (this.#start === this.#end) {
      // Drained: read from the buffer's start again, so the next read is offered all of it
      // rather than what is left at its end (one message a read, not two reads a message).
      if (this.#buf.length > this.#keep) this.#buf = EMPTY;
      this.#start = this.#end = 0;
    }
    if (this.#buf.length - this.#start < n) {
      // Compact, growing only when one message needs more room than we have. The buffer is
      // allocated on the first read: a connection that never speaks costs none.
      const size = Math.max(this.#buf.length || this.#size, n);
      const next = size === this.#buf.length ? this.#buf : new Uint8Array(size);
      next.set(this.#buf.subarray(this.#start, this.#end), 0);
      this.#end -= this.#start;
      this.#start = 0;
      this.#buf = next;
    }
    while (this.#end - this.#start < n) {
      const got = await this.#src.read(this.#buf.subarray(this.#end));
      if (got === null) return false;
      this.#end += got;
    }
    return true;
  }

  #take(n: number): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  #int32(): number {
    const b = this.#buf;
    const i = this.#start;
    this.#start += 4;
    return ((b[i]! << 24) | (b[i + 1]! << 16) | (b[i + 2]! << 8) | b[i + 3]!) >>> 0;
  }

  /** The next byte without consuming it, or `null` at end of stream. */
  async peekByte(): Promise<number | null> {
    if (!await this.#fill(1)) return null;
    return this.#buf[this.#start]!;
  }

  /** Hands over whatever is buffered (bytes that belong to a TLS handshake, say). */
  takeBuffered(): Uint8Array {
    const out = this.#buf.slice(this.#start, this.#end);
    this.#start = this.#end;
    return out;
  }

  /**
   * Reads one startup-phase packet, or `null` when the client closed before sending one.
   * Throws a FATAL 08P01 PgError for a length PostgreSQL would refuse.
   */
  async readStartup(): Promise<StartupPacket | null> {
    if (!await this.#fill(4)) {
      if (this.buffered === 0) return null;
      throw new ConnectionClosed();
    }
    const len = this.#int32();
    if (len < 8 || len > MAX_STARTUP_PACKET_LENGTH) {
      throw PgError.fatal(SqlState.PROTOCOL_VIOLATION, "invalid length of startup packet");
    }
    if (!await this.#fill(len - 4)) throw new ConnectionClosed();
    const code = this.#int32();
    return { code, body: this.#take(len - 8) };
  }

  /**
   * Reads one typed message, or `null` at a clean end of stream between messages.
   *
   * @param maxLength The largest body length accepted for a given type; longer messages are a
   * FATAL protocol violation before any byte of the body is buffered.
   */
  async readMessage(maxLength: (type: string) => number): Promise<FrontendMessage | null> {
    if (!await this.#fill(5)) {
      if (this.buffered === 0) return null;
      throw new ConnectionClosed();
    }
    const type = String.fromCharCode(this.#buf[this.#start]!);
    this.#start += 1;
    const len = this.#int32();
    if (len < 4 || len - 4 > maxLength(type)) {
      throw PgError.fatal(
        SqlState.PROTOCOL_VIOLATION,
        len < 4 ? `invalid message length` : `message of type "${type}" is too long`,
      );
    }
    if (!await this.#fill(len - 4)) throw new ConnectionClosed();
    return { type, body: this.#take(len - 4) };
  }
}
