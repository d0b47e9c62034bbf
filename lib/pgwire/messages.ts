/**
 * Builders of backend messages: authentication, parameter status, result sets, COPY and
 * ErrorResponse, each returned as the exact bytes to write.
 *
 * @module
 */

import type { PgError } from "./error.ts";

const encoder = new TextEncoder();

/** Type OIDs walrelay's result sets use. */
export const TypeOid = { INT4: 23, INT8: 20, TEXT: 25 } as const;

/** A column of a RowDescription. */
export interface FieldDescription {
  /** Column name. */
  name: string;
  /** Type OID, see {@linkcode TypeOid}. */
  typeOid: number;
  /** `typlen`: -1 for varlena types. */
  typeLen: number;
  /** `atttypmod`; -1 except where PostgreSQL builds the descriptor by hand. */
  typeMod?: number;
}

/**
 * Assembles one typed message. Grows as needed; {@linkcode MessageBuilder.finish} patches the
 * length word.
 *
 * @example
 * ```ts
 * import { MessageBuilder } from "./messages.ts";
 * import assert from "node:assert/strict";
 * const bytes = new MessageBuilder("Z").byte(0x49).finish();
 * assert.deepEqual([...bytes], [0x5a, 0, 0, 0, 5, 0x49]);
 * ```
 */
export class MessageBuilder {
  #buf: Uint8Array;
  #view: DataView;
  #pos: number;
  #typed: boolean;

  /**
   * @param type The message type byte as a character, or `null` for a startup-phase packet
   * without one.
   */
  constructor(type: string | null, capacity = 64) {
    this.#buf = new Uint8Array(capacity + 5);
    this.#view = new DataView(this.#buf.buffer);
    this.#typed = type !== null;
    if (type === null) {
      this.#pos = 4;
    } else {
      this.#buf[0] = type.charCodeAt(0);
      this.#pos = 5;
    }
  }

  #ensure(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#pos + n));
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  /** Appends one byte. */
  byte(b: number): this {
    this.#ensure(1);
    this.#buf[this.#pos++] = b;
    return this;
  }

  /** Appends a big-endian Int16. */
  int16(n: number): this {
    this.#ensure(2);
    this.#view.setInt16(this.#pos, n);
    this.#pos += 2;
    return this;
  }

  /** Appends a big-endian Int32. */
  int32(n: number): this {
    this.#ensure(4);
    this.#view.setInt32(this.#pos, n);
    this.#pos += 4;
    return this;
  }

  /** Appends a big-endian Int64. */
  int64(n: bigint): this {
    this.#ensure(8);
    this.#view.setBigInt64(this.#pos, BigInt.asIntN(64, n));
    this.#pos += 8;
    return this;
  }

  /** Appends raw bytes. */
  bytes(b: Uint8Array): this {
    this.#ensure(b.length);
    this.#buf.set(b, this.#pos);
    this.#pos += b.length;
    return this;
  }

  /** Appends a NUL-terminated string. */
  cstring(s: string): this {
    return this.bytes(encoder.encode(s)).byte(0);
  }

  /** Patches the length word and returns the message. */
  finish(): Uint8Array {
    const lenAt = this.#typed ? 1 : 0;
    this.#view.setInt32(lenAt, this.#pos - lenAt);
    return this.#buf.subarray(0, this.#pos);
  }
}

/**
 * `AuthenticationOk`.
 *
 * @example
 * ```ts
 * import { authenticationOk } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...authenticationOk()], [0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
 * ```
 */
export function authenticationOk(): Uint8Array {
  return new MessageBuilder("R").int32(0).finish();
}

/**
 * An `Authentication*` request with a payload (SASL mechanism list, SASL data, MD5 salt).
 *
 * @example
 * ```ts
 * import { authenticationRequest } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.equal(authenticationRequest(3).length, 9);
 * ```
 */
export function authenticationRequest(code: number, payload?: Uint8Array): Uint8Array {
  const b = new MessageBuilder("R").int32(code);
  if (payload) b.bytes(payload);
  return b.finish();
}

/**
 * `ParameterStatus name=value`.
 *
 * @example
 * ```ts
 * import { parameterStatus } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parameterStatus("integer_datetimes", "on")[0], 0x53);
 * ```
 */
export function parameterStatus(name: string, value: string): Uint8Array {
  return new MessageBuilder("S").cstring(name).cstring(value).finish();
}

/**
 * `BackendKeyData` with the connection's pid and cancel key: an Int32 under protocol 3.0, or
 * the bytes of a longer key (PostgreSQL 18 sends 32 under protocol 3.2).
 *
 * @example
 * ```ts
 * import { backendKeyData } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.equal(backendKeyData(8002, 1).length, 13);
 * assert.equal(backendKeyData(8002, new Uint8Array(32)).length, 41);
 * ```
 */
export function backendKeyData(pid: number, key: number | Uint8Array): Uint8Array {
  const b = new MessageBuilder("K").int32(pid);
  return (typeof key === "number" ? b.int32(key) : b.bytes(key)).finish();
}

/**
 * `ReadyForQuery` with transaction status `I` (a walsender is never in a transaction).
 *
 * @example
 * ```ts
 * import { readyForQuery } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...readyForQuery()], [0x5a, 0, 0, 0, 5, 0x49]);
 * ```
 */
export function readyForQuery(): Uint8Array {
  return new MessageBuilder("Z").byte(0x49).finish();
}

/**
 * `RowDescription` for text-format columns.
 *
 * @example
 * ```ts
 * import { rowDescription, TypeOid } from "./messages.ts";
 * import assert from "node:assert/strict";
 * const m = rowDescription([{ name: "timeline", typeOid: TypeOid.INT4, typeLen: 4 }]);
 * assert.equal(m[0], 0x54);
 * ```
 */
export function rowDescription(fields: readonly FieldDescription[]): Uint8Array {
  const b = new MessageBuilder("T").int16(fields.length);
  for (const f of fields) {
    b.cstring(f.name).int32(0).int16(0).int32(f.typeOid).int16(f.typeLen).int32(f.typeMod ?? -1)
      .int16(0);
  }
  return b.finish();
}

/**
 * `DataRow` of text values; `null` is SQL NULL. Byte arrays are sent as they are.
 *
 * @example
 * ```ts
 * import { dataRow } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.equal(dataRow(["1", null]).length, 1 + 4 + 2 + 4 + 1 + 4);
 * ```
 */
export function dataRow(values: readonly (string | Uint8Array | null)[]): Uint8Array {
  const b = new MessageBuilder("D").int16(values.length);
  for (const v of values) {
    if (v === null) {
      b.int32(-1);
    } else {
      const bytes = typeof v === "string" ? encoder.encode(v) : v;
      b.int32(bytes.length).bytes(bytes);
    }
  }
  return b.finish();
}

/**
 * `CommandComplete` with a tag.
 *
 * @example
 * ```ts
 * import { commandComplete } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.equal(new TextDecoder().decode(commandComplete("SHOW").subarray(5, 9)), "SHOW");
 * ```
 */
export function commandComplete(tag: string): Uint8Array {
  return new MessageBuilder("C").cstring(tag).finish();
}

/**
 * A whole result set: `RowDescription`, one `DataRow` per row, then `CommandComplete`. The caller
 * sends them together, usually followed by `ReadyForQuery`.
 *
 * @param fields The columns.
 * @param rows Text values per row; `null` is SQL NULL.
 * @param tag The CommandComplete tag.
 * @returns The messages in order.
 *
 * @example
 * ```ts
 * import { resultSet, TypeOid } from "./messages.ts";
 * import assert from "node:assert/strict";
 * const set = resultSet([{ name: "timeline", typeOid: TypeOid.INT4, typeLen: 4 }], [["1"]], "SHOW");
 * assert.deepEqual(set.map((m) => String.fromCharCode(m[0]!)), ["T", "D", "C"]);
 * ```
 */
export function resultSet(
  fields: readonly FieldDescription[],
  rows: readonly (readonly (string | Uint8Array | null)[])[],
  tag: string,
): Uint8Array[] {
  return [rowDescription(fields), ...rows.map(dataRow), commandComplete(tag)];
}

/**
 * `CopyBothResponse`: overall text format, no columns, as the walsender sends it.
 *
 * @example
 * ```ts
 * import { copyBothResponse } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...copyBothResponse()], [0x57, 0, 0, 0, 7, 0, 0, 0]);
 * ```
 */
export function copyBothResponse(): Uint8Array {
  return new MessageBuilder("W").byte(0).int16(0).finish();
}

/**
 * `CopyDone`.
 *
 * @example
 * ```ts
 * import { copyDone } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...copyDone()], [0x63, 0, 0, 0, 4]);
 * ```
 */
export function copyDone(): Uint8Array {
  return new MessageBuilder("c").finish();
}

/**
 * `NegotiateProtocolVersion`: the protocol version the connection will use (the whole version
 * word, `0x00030000` for 3.0) and the options we ignored.
 *
 * @example
 * ```ts
 * import { negotiateProtocolVersion } from "./messages.ts";
 * import assert from "node:assert/strict";
 * assert.equal(negotiateProtocolVersion(0x30000, [])[0], 0x76);
 * ```
 */
export function negotiateProtocolVersion(version: number, unrecognized: string[]): Uint8Array {
  const b = new MessageBuilder("v").int32(version).int32(unrecognized.length);
  for (const o of unrecognized) b.cstring(o);
  return b.finish();
}

/**
 * `ErrorResponse` for a {@linkcode PgError}: severity (localised and not), SQLSTATE, message,
 * detail, hint and routine.
 *
 * @example
 * ```ts
 * import { errorResponse } from "./messages.ts";
 * import { PgError, SqlState } from "./error.ts";
 * import assert from "node:assert/strict";
 * const m = errorResponse(new PgError(SqlState.SYNTAX_ERROR, "syntax error"));
 * assert.equal(m[0], 0x45);
 * ```
 */
export function errorResponse(err: PgError): Uint8Array {
  const b = new MessageBuilder("E");
  b.byte(0x53).cstring(err.severity);
  b.byte(0x56).cstring(err.severity);
  b.byte(0x43).cstring(err.code);
  b.byte(0x4d).cstring(err.message);
  if (err.fields.detail !== undefined) b.byte(0x44).cstring(err.fields.detail);
  if (err.fields.hint !== undefined) b.byte(0x48).cstring(err.fields.hint);
  if (err.fields.routine !== undefined) b.byte(0x52).cstring(err.fields.routine);
  return b.byte(0).finish();
}
