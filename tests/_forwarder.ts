/**
 * A loopback TCP forwarder whose server-to-client direction can be silenced: a stalled network,
 * for the timeouts of the upstream connections.
 *
 * @module
 */

import { freePort } from "./_pg.ts";

/** What {@linkcode forwarder} returns. */
export interface Forwarder extends AsyncDisposable {
  /** The port to connect to instead of the server's. */
  port: number;
  /** Stops passing the server's bytes on, for the connections open now. */
  silence(): void;
}

/** A loopback forwarder to `port`; `silence()` stops the server → client direction of the
 * connections open at that moment. */
export async function forwarder(port: number): Promise<Forwarder> {
  const listenPort = await freePort();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: listenPort });
  const open: { silenced: boolean; conns: Deno.Conn[] }[] = [];
  const pipe = async (from: Deno.Conn, to: Deno.Conn, gate?: { silenced: boolean }) => {
    const buf = new Uint8Array(65536);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        // Silenced: hold the bytes back for good, as a stalled network would.
        if (gate?.silenced) continue;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch { /* closed */ }
    for (const c of [from, to]) {
      try {
        c.close();
      } catch { /* already closed */ }
    }
  };
  const pumps: Promise<void>[] = [];
  const accepting = (async () => {
    for await (const client of listener) {
      const server = await Deno.connect({ hostname: "127.0.0.1", port });
      const link = { silenced: false, conns: [client, server] };
      open.push(link);
      pumps.push(pipe(client, server), pipe(server, client, link));
    }
  })();
  return {
    port: listenPort,
    silence: () => open.forEach((l) => l.silenced = true),
    async [Symbol.asyncDispose]() {
      listener.close();
      await accepting.catch(() => {});
      for (const l of open) {
        for (const c of l.conns) {
          try {
            c.close();
          } catch { /* already closed */ }
        }
      }
      await Promise.all(pumps);
    },
  };
}
