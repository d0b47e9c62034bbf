// The TLS bridge under concurrent upgrades: the loopback listener may accept a bridged
// connection before the upgrade that opened it has learned its port, and that connection must
// still be the one the upgrade gets (it used to be closed as a stranger, the client seeing the
// server hang up in the middle of the handshake).

import assert from "node:assert/strict";
import { TlsBridge } from "../lib/pgwire/tls_bridge.ts";
import { tempDir } from "./_pg.ts";
import { makeCertificates } from "./_tls_util.ts";

Deno.test("TLS bridge: upgrades complete when the bridge's accept comes first", async () => {
  await using dir = await tempDir("walrelay-tls-bridge-");
  await makeCertificates(dir.path);
  const read = (name: string) => Deno.readTextFile(`${dir.path}/${name}`);
  const bridge = await TlsBridge.start({
    cert: await read("server.crt"),
    key: await read("server.key"),
  });
  const ca = await read("ca.crt");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const closers: (() => void)[] = [];
  // The server side: every accepted connection bridged, then a byte answered with another.
  const serving = (async () => {
    const sessions: Promise<void>[] = [];
    try {
      for await (const accepted of listener) {
        sessions.push((async () => {
          const { conn, close } = await bridge.upgrade(accepted, new Uint8Array());
          closers.push(close);
          const b = new Uint8Array(1);
          if (await conn.read(b) === 1) await conn.write(new Uint8Array([b[0]! + 1]));
        })());
      }
    } catch { /* listener closed */ }
    await Promise.all(sessions);
  })();
  try {
    /** One client: TLS through the bridge, a byte each way. */
    const one = async (): Promise<void> => {
      const raw = await Deno.connect({ hostname: "127.0.0.1", port });
      const client = await Deno.startTls(raw, { hostname: "localhost", caCerts: [ca] });
      closers.push(() => client.close());
      await client.write(new Uint8Array([1]));
      const b = new Uint8Array(1);
      assert.equal(await client.read(b), 1);
      assert.equal(b[0], 2);
    };
    // Under load the accept often completes before the connect's await resumes; here always:
    // the bridge's own connect to its listener returns only once the accept has surely run.
    const connect = Deno.connect;
    const bridged = new Set<number>();
    Object.assign(Deno, {
      connect: async (o: Deno.ConnectOptions) => {
        const c = await connect(o);
        if (o.port !== port) {
          bridged.add(o.port);
          await new Promise((r) => setTimeout(r, 50));
        }
        return c;
      },
    });
    try {
      for (let i = 0; i < 100; i += 20) {
        await Promise.all(Array.from({ length: 20 }, one));
      }
    } finally {
      Object.assign(Deno, { connect });
    }
    assert.equal(bridged.size, 1, "the bridge connected to its listener");
  } finally {
    for (const close of closers) {
      try {
        close();
      } catch { /* closed */ }
    }
    listener.close();
    await serving;
    bridge.close();
    await bridge.finished;
  }
});
