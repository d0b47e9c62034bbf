/**
 * Client authentication as `ClientAuthentication` does it: the first matching `pg_hba.conf` line
 * picks the method, and the method runs against the verifiers of the `--passwords` file.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import { authenticationRequest } from "../pgwire/messages.ts";
import { BodyReader } from "../pgwire/body_reader.ts";
import type { Authenticator, AuthRequest } from "./contract.ts";
import { DEFAULT_HBA_CONF, hbaRejectMessage, type HbaRule, matchHba, parseHba } from "./hba.ts";
import { md5PasswordHash, verifyMd5Password, verifyMd5Response } from "./md5.ts";
import { parsePasswords } from "./passwords.ts";
import {
  mockVerifier,
  parseScramVerifier,
  scramMechanisms,
  ScramServer,
  verifyScramPassword,
} from "./scram.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Where the rules and verifiers come from. */
export interface AuthFiles {
  /** A `pg_hba.conf`-style file; without one only loopback clients are trusted. */
  hba?: string | undefined;
  /** A `user:verifier` file. */
  passwords?: string | undefined;
}

/** The rules and verifiers in force. */
export interface AuthConfig {
  /** `pg_hba.conf` rules, first match wins. */
  rules: HbaRule[];
  /** Verifiers by user, as `pg_authid.rolpassword` stores them. */
  passwords: Map<string, string>;
}

/**
 * Reads the authentication files. Throws with the file name and line on a bad file, so a reload
 * can keep the previous configuration and log why.
 *
 * @example
 * ```ts
 * import { loadAuthConfig } from "./authenticator.ts";
 * import assert from "node:assert/strict";
 * const config = await loadAuthConfig({});
 * assert.equal(config.rules[0]?.method, "trust");
 * ```
 */
export async function loadAuthConfig(files: AuthFiles): Promise<AuthConfig> {
  const rules = files.hba
    ? parseHba(await Deno.readTextFile(files.hba), files.hba)
    : parseHba(DEFAULT_HBA_CONF);
  let passwords = new Map<string, string>();
  if (files.passwords) {
    try {
      passwords = parsePasswords(await Deno.readTextFile(files.passwords));
    } catch (e) {
      throw new Error(`${files.passwords}: ${(e as Error).message}`);
    }
  }
  return { rules, passwords };
}

function authFailed(user: string): PgError {
  return PgError.fatal(
    SqlState.INVALID_PASSWORD,
    `password authentication failed for user "${user}"`,
  );
}

/**
 * The authenticator for a configuration. `config()` is read per connection, so a reload takes
 * effect for the next client without touching connected ones.
 *
 * @example
 * ```ts
 * import { createAuthenticator, loadAuthConfig } from "./authenticator.ts";
 * const config = await loadAuthConfig({});
 * const authenticate = createAuthenticator(() => config, crypto.getRandomValues(new Uint8Array(16)));
 * await authenticate({
 *   user: "repl",
 *   address: "127.0.0.1",
 *   ssl: false,
 *   send: () => Promise.resolve(),
 *   receive: () => Promise.resolve(new Uint8Array()),
 * });
 * ```
 */
export function createAuthenticator(
  config: () => AuthConfig,
  mockSecret: Uint8Array,
): Authenticator {
  return async (req: AuthRequest): Promise<void> => {
    const { rules, passwords } = config();
    const rule = matchHba(rules, { address: req.address, ssl: req.ssl, user: req.user });
    if (!rule) {
      throw PgError.fatal(
        SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
        hbaRejectMessage(req.address, req.user, req.ssl),
      );
    }
    const stored = passwords.get(req.user);
    switch (rule.method) {
      case "trust":
        return;
      case "reject":
        throw PgError.fatal(
          SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
          hbaRejectMessage(req.address, req.user, req.ssl, true),
        );
      case "password":
        return await passwordAuth(req, stored);
      case "md5":
        // As PostgreSQL: an md5 line still runs SCRAM for a role whose secret is a SCRAM verifier.
        if (stored && parseScramVerifier(stored)) return await scramAuth(req, stored, mockSecret);
        return await md5Auth(req, stored);
      case "scram-sha-256":
        return await scramAuth(req, stored, mockSecret);
    }
  };
}

async function passwordAuth(req: AuthRequest, stored: string | undefined): Promise<void> {
  await req.send(authenticationRequest(3));
  const password = new BodyReader(await req.receive()).cstring();
  if (password === "") {
    throw PgError.fatal(SqlState.INVALID_PASSWORD, "empty password returned by client");
  }
  let ok = false;
  if (stored?.startsWith("SCRAM-SHA-256$")) ok = await verifyScramPassword(stored, password);
  else if (stored?.startsWith("md5")) ok = verifyMd5Password(stored, req.user, password);
  if (!ok) throw authFailed(req.user);
}

async function md5Auth(req: AuthRequest, stored: string | undefined): Promise<void> {
  const salt = crypto.getRandomValues(new Uint8Array(4));
  await req.send(authenticationRequest(5, salt));
  const response = new BodyReader(await req.receive()).cstring();
  // Unknown users are asked all the same, so the exchange does not reveal who exists.
  const secret = stored ?? md5PasswordHash(crypto.randomUUID(), req.user);
  if (!stored || !verifyMd5Response(secret, salt, response)) throw authFailed(req.user);
}

async function scramAuth(
  req: AuthRequest,
  stored: string | undefined,
  mockSecret: Uint8Array,
): Promise<void> {
  const real = stored && parseScramVerifier(stored) ? stored : undefined;
  const verifier = real ?? await mockVerifier(req.user, mockSecret);
  const binding = req.ssl ? req.channelBinding : undefined;
  const mechanisms = scramMechanisms(req.ssl, binding !== undefined);
  const list = encoder.encode(mechanisms.map((m) => m + "\0").join("") + "\0");
  await req.send(authenticationRequest(10, list));

  const initial = new BodyReader(await req.receive());
  const mechanism = initial.cstring();
  if (!mechanisms.includes(mechanism)) {
    throw PgError.fatal(
      SqlState.PROTOCOL_VIOLATION,
      "client selected an invalid SASL authentication mechanism",
    );
  }
  const len = initial.int32();
  if (len < 0 || len !== initial.remaining) {
    throw PgError.fatal(SqlState.PROTOCOL_VIOLATION, "malformed SASLInitialResponse message");
  }
  const server = new ScramServer({
    verifier,
    user: req.user,
    mechanism,
    channelBinding: binding && { type: "tls-server-end-point", data: binding },
  });
  const serverFirst = server.handleClientFirst(decoder.decode(initial.bytes(len)));
  await req.send(authenticationRequest(11, encoder.encode(serverFirst)));
  const final = await req.receive();
  const serverFinal = await server.handleClientFinal(decoder.decode(final));
  if (!real) throw authFailed(req.user);
  await req.send(authenticationRequest(12, encoder.encode(serverFinal)));
}
