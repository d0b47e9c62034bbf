/**
 * The results of a simple query as the client returns them, and the parsers of the messages that
 * carry them: RowDescription, DataRow, CommandComplete.
 *
 * @module
 */

import { BodyReader } from "./body_reader.ts";

const decoder = new TextDecoder();

/** A column of a result set. */
export interface ResultField {
  /** Column name. */
  name: string;
  /** Type OID. */
  typeOid: number;
  /** `atttypmod`. */
  typeMod: number;
}

/** One result of a simple query. */
export interface QueryResult {
  /** Columns, when the command returned rows. */
  fields: ResultField[];
  /** Rows of text values (`null` = SQL NULL). */
  rows: (string | null)[][];
  /** The CommandComplete tag. */
  tag: string;
}

/**
 * The columns of a RowDescription body.
 *
 * @example
 * ```ts
 * import { parseRowDescription } from "./query_result.ts";
 * import assert from "node:assert/strict";
 * const body = new Uint8Array([0, 1, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 255, 255, 255, 255, 255, 255, 0, 0]);
 * assert.deepEqual(parseRowDescription(body), [{ name: "x", typeOid: 25, typeMod: -1 }]);
 * ```
 */
export function parseRowDescription(body: Uint8Array): ResultField[] {
  const r = new BodyReader(body);
  const count = r.int16();
  const fields: ResultField[] = [];
  for (let i = 0; i < count; i++) {
    const name = r.cstring();
    r.bytes(6); // table OID, column number
    const typeOid = r.int32();
    r.bytes(2); // typlen
    const typeMod = r.int32();
    r.bytes(2); // format
    fields.push({ name, typeOid, typeMod });
  }
  return fields;
}

/**
 * The text values of a DataRow body (`null` for SQL NULL).
 *
 * @example
 * ```ts
 * import { parseDataRow } from "./query_result.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseDataRow(new Uint8Array([0, 1, 255, 255, 255, 255])), [null]);
 * ```
 */
export function parseDataRow(body: Uint8Array): (string | null)[] {
  const r = new BodyReader(body);
  const count = r.int16();
  const row: (string | null)[] = [];
  for (let i = 0; i < count; i++) {
    const len = r.int32();
    row.push(len < 0 ? null : decoder.decode(r.bytes(len)));
  }
  return row;
}

/**
 * The tag of a CommandComplete body (`SELECT 1`, `CREATE_REPLICATION_SLOT`).
 *
 * @example
 * ```ts
 * import { parseCommandTag } from "./query_result.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseCommandTag(new TextEncoder().encode("SELECT 1\0")), "SELECT 1");
 * ```
 */
export function parseCommandTag(body: Uint8Array): string {
  return new BodyReader(body).cstring();
}
