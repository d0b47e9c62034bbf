/**
 * Errors that reach the client as a PostgreSQL ErrorResponse.
 *
 * @module
 */

/** ErrorResponse severities walrelay sends. */
export type Severity = "ERROR" | "FATAL";

/**
 * SQLSTATE codes walrelay uses, named as in PostgreSQL's `errcodes.txt`. An `Authenticator`
 * rejects a client with one of them, as PostgreSQL would.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SqlState } from "./error.ts";
 * assert.equal(SqlState.INVALID_PASSWORD, "28P01");
 * ```
 */
export const SqlState = {
  SYNTAX_ERROR: "42601",
  UNDEFINED_OBJECT: "42704",
  DUPLICATE_OBJECT: "42710",
  FEATURE_NOT_SUPPORTED: "0A000",
  UNDEFINED_FILE: "58P01",
  INTERNAL_ERROR: "XX000",
  TOO_MANY_CONNECTIONS: "53300",
  PROTOCOL_VIOLATION: "08P01",
  INVALID_AUTHORIZATION_SPECIFICATION: "28000",
  INVALID_PASSWORD: "28P01",
  INVALID_PARAMETER_VALUE: "22023",
  OBJECT_NOT_IN_PREREQUISITE_STATE: "55000",
  OBJECT_IN_USE: "55006",
  CANNOT_CONNECT_NOW: "57P03",
  ADMIN_SHUTDOWN: "57P01",
  INVALID_NAME: "42602",
  NAME_TOO_LONG: "42622",
  PROGRAM_LIMIT_EXCEEDED: "54000",
  CONFIGURATION_LIMIT_EXCEEDED: "53400",
  IO_ERROR: "58030",
  DATA_CORRUPTED: "XX001",
  NUMERIC_VALUE_OUT_OF_RANGE: "22003",
} as const;

/** One of the SQLSTATE codes in {@linkcode SqlState}. */
export type SqlStateCode = typeof SqlState[keyof typeof SqlState];

/** Optional fields of an ErrorResponse. */
export interface PgErrorFields {
  /** `D`: a secondary message with more detail. */
  detail?: string;
  /** `H`: a suggestion of what to do. */
  hint?: string;
  /** `R`: the routine that raised it, for grep across logs. */
  routine?: string;
}

/**
 * An error to report to the client as PostgreSQL would: severity, SQLSTATE and a message in
 * PostgreSQL's words. `ERROR` ends the command, `FATAL` ends the connection.
 *
 * @example
 * ```ts
 * import { PgError, SqlState } from "./error.ts";
 * import assert from "node:assert/strict";
 * const e = new PgError(SqlState.UNDEFINED_OBJECT, 'replication slot "x" does not exist');
 * assert.equal(e.code, "42704");
 * assert.equal(e.severity, "ERROR");
 * ```
 */
export class PgError extends Error {
  /** The SQLSTATE. */
  readonly code: SqlStateCode;
  /** `ERROR` or `FATAL`. */
  readonly severity: Severity;
  /** Detail, hint and routine, when known. */
  readonly fields: PgErrorFields;

  /**
   * Creates the error; `ERROR` unless told otherwise.
   *
   * @param code The SQLSTATE.
   * @param message The primary message, lower case, as PostgreSQL words it.
   * @param fields Detail, hint and routine.
   * @param severity `ERROR` (default) or `FATAL`.
   */
  constructor(
    code: SqlStateCode,
    message: string,
    fields: PgErrorFields = {},
    severity: Severity = "ERROR",
  ) {
    super(message);
    this.name = "PgError";
    this.code = code;
    this.severity = severity;
    this.fields = fields;
  }

  /**
   * The same error as FATAL, for failures that must end the connection.
   *
   * @example
   * ```ts
   * import { PgError, SqlState } from "./error.ts";
   * import assert from "node:assert/strict";
   * assert.equal(PgError.fatal(SqlState.PROTOCOL_VIOLATION, "bad").severity, "FATAL");
   * ```
   */
  static fatal(code: SqlStateCode, message: string, fields: PgErrorFields = {}): PgError {
    return new PgError(code, message, fields, "FATAL");
  }
}
