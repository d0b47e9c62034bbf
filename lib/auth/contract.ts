/**
 * The authentication contract between a replication session and whatever decides who may
 * connect: what the session tells the authenticator, and how the authenticator talks to the
 * client.
 *
 * @module
 */

/** What the authenticator knows of the client and how it talks to it. */
export interface AuthRequest {
  /** Startup `user`. */
  user: string;
  /** Client IP address. */
  address: string;
  /** Whether the connection is encrypted. */
  ssl: boolean;
  /** `tls-server-end-point` data when the connection is TLS and the certificate allows binding. */
  channelBinding?: Uint8Array | undefined;
  /** Sends bytes to the client. */
  send(bytes: Uint8Array): Promise<void>;
  /** Reads the client's next password-family (`p`) message body. */
  receive(): Promise<Uint8Array>;
}

/**
 * Decides whether a client may connect; throws a FATAL PgError to refuse. It runs after the
 * startup packet and before the server's parameters are sent, within `authentication_timeout`.
 *
 * @example
 * ```ts
 * import type { Authenticator } from "./contract.ts";
 * const admitAll: Authenticator = () => Promise.resolve();
 * await admitAll({
 *   user: "repl",
 *   address: "10.0.0.5",
 *   ssl: false,
 *   send: () => Promise.resolve(),
 *   receive: () => Promise.resolve(new Uint8Array()),
 * });
 * ```
 */
export type Authenticator = (req: AuthRequest) => Promise<void>;
