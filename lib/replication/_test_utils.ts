/**
 * Helpers of this folder's tests.
 *
 * @module
 */

import { ClientConnection } from "./connection.ts";

/** A loopback connection: the server side wrapped as a session sees it, the client side raw. */
export async function connectionPair(): Promise<
  { server: ClientConnection; client: Deno.TcpConn } & Disposable
> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, conn] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  const server = new ClientConnection(conn);
  return {
    server,
    client,
    [Symbol.dispose]() {
      server.close();
      client.close();
    },
  };
}
