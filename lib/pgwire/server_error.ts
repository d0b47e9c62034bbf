/**
 * What a server says when something went wrong: ErrorResponse and NoticeResponse fields, and the
 * error the client throws for them.
 *
 * @module
 */

import { BodyReader } from "./body_reader.ts";
import { PgError, type SqlStateCode } from "./error.ts";

/**
 * An ErrorResponse from the server, with every field it sent.
 *
 * @example
 * ```ts
 * import { PgServerError } from "./server_error.ts";
 * import assert from "node:assert/strict";
 * const e = new PgServerError({ S: "FATAL", V: "FATAL", C: "28000", M: "no pg_hba.conf entry" });
 * assert.equal(e.code, "28000");
 * assert.equal(e.severity, "FATAL");
 * ```
 */
export class PgServerError extends PgError {
  /** All fields by their one-letter code. */
  readonly all: Record<string, string>;

  /** @param fields The ErrorResponse fields by code. */
  constructor(fields: Record<string, string>) {
    super(
      (fields.C ?? "XX000") as SqlStateCode,
      fields.M ?? "unknown error",
      {
        ...(fields.D !== undefined ? { detail: fields.D } : {}),
        ...(fields.H !== undefined ? { hint: fields.H } : {}),
        ...(fields.R !== undefined ? { routine: fields.R } : {}),
      },
      fields.V === "FATAL" || fields.S === "FATAL" ? "FATAL" : "ERROR",
    );
    this.name = "PgServerError";
    this.all = fields;
  }
}

/**
 * Parses an ErrorResponse or NoticeResponse body into its fields.
 *
 * @example
 * ```ts
 * import { parseErrorFields } from "./server_error.ts";
 * import assert from "node:assert/strict";
 * const body = new TextEncoder().encode("SERROR\0C42704\0Mno such slot\0\0");
 * assert.deepEqual(parseErrorFields(body), { S: "ERROR", C: "42704", M: "no such slot" });
 * ```
 */
export function parseErrorFields(body: Uint8Array): Record<string, string> {
  const r = new BodyReader(body);
  const out: Record<string, string> = {};
  while (r.remaining > 0) {
    const code = r.byte();
    if (code === 0) break;
    out[String.fromCharCode(code)] = r.cstring();
  }
  return out;
}
