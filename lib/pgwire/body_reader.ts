/**
 * Reads the fields of a message body, refusing to run past its end.
 *
 * @module
 */

import { PgError, SqlState } from "./error.ts";

const decoder = new TextDecoder("utf-8", { fatal: false });

/**
 * A cursor over a message body. Running past the end is a protocol violation, reported as PostgreSQL
 * reports it (`invalid message format`), never an out-of-range read.
 *
 * @example
 * ```ts
 * import { BodyReader } from "./body_reader.ts";
 * import assert from "node:assert/strict";
 * const r = new BodyReader(new Uint8Array([0x61, 0, 0, 0, 0, 7]));
 * assert.equal(r.cstring(), "a");
 * assert.equal(r.int32(), 7);
 * assert.equal(r.remaining, 0);
 * ```
 */
export class BodyReader {
  #bytes: Uint8Array;
  #view: DataView;
  #pos = 0;

  /** @param bytes The message body. */
  constructor(bytes: Uint8Array) {
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Bytes not yet read. */
  get remaining(): number {
    return this.#bytes.length - this.#pos;
  }

  #need(n: number): void {
    if (this.#pos + n > this.#bytes.length) {
      throw PgError.fatal(SqlState.PROTOCOL_VIOLATION, "invalid message format");
    }
  }

  /** One byte. */
  byte(): number {
    this.#need(1);
    return this.#bytes[this.#pos++]!;
  }

  /** A big-endian Int16. */
  int16(): number {
    this.#need(2);
    const v = this.#view.getInt16(this.#pos);
    this.#pos += 2;
    return v;
  }

  /** A big-endian Int32. */
  int32(): number {
    this.#need(4);
    const v = this.#view.getInt32(this.#pos);
    this.#pos += 4;
    return v;
  }

  /** A big-endian unsigned Int32. */
  uint32(): number {
    this.#need(4);
    const v = this.#view.getUint32(this.#pos);
    this.#pos += 4;
    return v;
  }

  /** A big-endian Int64. */
  int64(): bigint {
    this.#need(8);
    const v = this.#view.getBigInt64(this.#pos);
    this.#pos += 8;
    return v;
  }

  /** A big-endian unsigned Int64, as LSNs travel. */
  uint64(): bigint {
    this.#need(8);
    const v = this.#view.getBigUint64(this.#pos);
    this.#pos += 8;
    return v;
  }

  /** `n` raw bytes (a view, not a copy). */
  bytes(n: number): Uint8Array {
    if (n < 0) throw PgError.fatal(SqlState.PROTOCOL_VIOLATION, "invalid message format");
    this.#need(n);
    const v = this.#bytes.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return v;
  }

  /** A NUL-terminated string. */
  cstring(): string {
    const end = this.#bytes.indexOf(0, this.#pos);
    if (end < 0) throw PgError.fatal(SqlState.PROTOCOL_VIOLATION, "invalid string in message");
    const s = decoder.decode(this.#bytes.subarray(this.#pos, end));
    this.#pos = end + 1;
    return s;
  }
}
