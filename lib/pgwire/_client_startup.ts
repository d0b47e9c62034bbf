/**
 * The client's side of startup: the StartupMessage, then authentication as the server asks for it
 * (trust, password, md5, SCRAM-SHA-256), then the ParameterStatus and BackendKeyData that come
 * before the first ReadyForQuery.
 *
 * @module
 */

import { md5PasswordHash, md5SaltedResponse } from "../auth/md5.ts";
import { ScramClient } from "../auth/scram_client.ts";
import { BodyReader } from "./body_reader.ts";
import type { ClientOptions } from "./client_transport.ts";
import type { FrontendMessage } from "./message_reader.ts";
import { MessageBuilder } from "./messages.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What startup needs of a connection, and where it leaves what the server reported. */
export interface StartupChannel {
  /** The next backend message; ErrorResponse rejects. */
  next(): Promise<FrontendMessage>;
  /** Writes a whole message. */
  write(bytes: Uint8Array): Promise<void>;
  /** ParameterStatus values, filled in as they arrive. */
  readonly parameters: Map<string, string>;
  /** BackendKeyData pid. */
  pid: number;
}

/**
 * Sends the StartupMessage and answers the server until it is ready for queries.
 *
 * @throws {Error} when the server asks for a password and none was given, or for a method the
 * client does not speak; the server's FATAL as the channel's `next` throws it.
 */
export async function startup(c: StartupChannel, options: ClientOptions): Promise<void> {
  const message = new MessageBuilder(null).int32(196608).cstring("user").cstring(options.user);
  const params = options.params ?? { database: "replication", replication: "true" };
  for (const [k, v] of Object.entries(params)) message.cstring(k).cstring(v);
  await c.write(message.byte(0).finish());
  await authenticate(c, options);
}

async function authenticate(c: StartupChannel, options: ClientOptions): Promise<void> {
  let scram: ScramClient | undefined;
  while (true) {
    const msg = await c.next();
    if (msg.type === "R") {
      const r = new BodyReader(msg.body);
      const code = r.int32();
      const password = options.password;
      if (code === 0) continue;
      if (password === undefined && code !== 12) {
        throw new Error("the server asked for a password and none was given");
      }
      if (code === 3) {
        await c.write(new MessageBuilder("p").cstring(password!).finish());
      } else if (code === 5) {
        const salt = r.bytes(4);
        const answer = md5SaltedResponse(md5PasswordHash(password!, options.user), salt);
        await c.write(new MessageBuilder("p").cstring(answer).finish());
      } else if (code === 10) {
        const mechanisms: string[] = [];
        for (let m = r.cstring(); m !== ""; m = r.cstring()) mechanisms.push(m);
        if (!mechanisms.includes("SCRAM-SHA-256")) {
          throw new Error(`no supported SASL mechanism among ${mechanisms.join(", ")}`);
        }
        scram = new ScramClient(password!);
        const first = encoder.encode(scram.clientFirst());
        await c.write(
          new MessageBuilder("p").cstring("SCRAM-SHA-256").int32(first.length).bytes(first)
            .finish(),
        );
      } else if (code === 11 && scram) {
        const final = await scram.clientFinal(decoder.decode(r.bytes(r.remaining)));
        await c.write(new MessageBuilder("p").bytes(encoder.encode(final)).finish());
      } else if (code === 12 && scram) {
        scram.verifyServerFinal(decoder.decode(r.bytes(r.remaining)));
      } else {
        throw new Error(`unsupported authentication request ${code}`);
      }
    } else if (msg.type === "S") {
      const r = new BodyReader(msg.body);
      c.parameters.set(r.cstring(), r.cstring());
    } else if (msg.type === "K") {
      c.pid = new BodyReader(msg.body).int32();
    } else if (msg.type === "Z") {
      return;
    } else if (msg.type === "v") {
      continue;
    } else {
      throw new Error(`unexpected message "${msg.type}" during startup`);
    }
  }
}
