/**
 * The error that stops the upstream receiver for good.
 *
 * @module
 */

/**
 * Thrown for problems reconnecting cannot fix (another database system, another segment size).
 *
 * @example
 * ```ts
 * import { UpstreamConfigError } from "./config_error.ts";
 * import assert from "node:assert/strict";
 * const e = new UpstreamConfigError("upstream WAL segment size 1048576 differs from 16777216");
 * assert.equal(e.name, "UpstreamConfigError");
 * ```
 */
export class UpstreamConfigError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "UpstreamConfigError";
  }
}
