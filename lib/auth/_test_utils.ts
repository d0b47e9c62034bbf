/**
 * A minimal SCRAM-SHA-256 client for tests (what libpq computes), written from RFC 5802 so the
 * server can be exercised beyond the one captured exchange.
 *
 * @module
 */

import { parseScramVerifier } from "./scram.ts";
import { scramClientFinal } from "./scram_client.ts";

/** The client-final-message for `serverFirst`, from the client's keys. */
export const clientFinal = scramClientFinal;

/** Sanity helper: the verifier parses (tests fail loudly otherwise). */
export function mustParse(verifier: string): NonNullable<ReturnType<typeof parseScramVerifier>> {
  const v = parseScramVerifier(verifier);
  if (!v) throw new Error(`not a SCRAM verifier: ${verifier}`);
  return v;
}
