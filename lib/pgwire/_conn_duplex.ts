/**
 * A Deno connection as a `node:stream` Duplex, for `node:tls` to run a TLS session over it.
 *
 * The client speaks plain TCP through `Deno.connect` (the native path, the one the replication
 * stream uses when there is no TLS) and switches to TLS on the same connection after the server
 * answers SSLRequest with `S`; `node:tls` takes any Duplex as its transport.
 *
 * @module
 */

import { Duplex } from "node:stream";
import { writeAll } from "../_io.ts";

/**
 * Wraps `conn`. Reads are pulled as the TLS layer asks for data, so the kernel's buffer is the
 * only queue; destroying the Duplex closes the connection.
 *
 * @example
 * ```ts ignore
 * import * as tls from "node:tls";
 * const conn = await Deno.connect({ hostname: "db", port: 5432 });
 * // … SSLRequest answered with "S" …
 * const secure = tls.connect({ socket: connDuplex(conn), servername: "db" });
 * ```
 */
export function connDuplex(conn: Deno.Conn): Duplex {
  const buf = new Uint8Array(64 * 1024);
  let reading = false;
  return new Duplex({
    read() {
      if (reading) return;
      reading = true;
      (async () => {
        while (true) {
          let n: number | null;
          try {
            n = await conn.read(buf);
          } catch (e) {
            this.destroy(e as Error);
            return;
          }
          if (n === null) {
            this.push(null);
            return;
          }
          // push() copies nothing: hand over a copy, the buffer is read into again.
          if (!this.push(buf.slice(0, n))) break;
        }
        reading = false;
      })();
    },
    write(chunk: Uint8Array, _encoding, callback) {
      writeAll(conn, chunk).then(() => callback(), (e) => callback(e as Error));
    },
    final(callback) {
      try {
        conn.closeWrite();
      } catch { /* already closed */ }
      callback();
    },
    destroy(error, callback) {
      try {
        conn.close();
      } catch { /* already closed */ }
      callback(error);
    },
  });
}
