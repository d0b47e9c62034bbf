import assert from "node:assert/strict";
import { ClientConnection } from "./connection.ts";

async function pair(): Promise<{ server: ClientConnection; client: Deno.TcpConn }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, conn] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  listener.close();
  return { server: new ClientConnection(conn), client };
}

async function readExactly(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  let at = 0;
  while (at < n) {
    const got = await conn.read(out.subarray(at));
    if (got === null) throw new Error(`EOF after ${at} of ${n} bytes`);
    at += got;
  }
  return out;
}

Deno.test("ClientConnection: short and long writes, not awaited, reach the socket in order", async () => {
  const { server, client } = await pair();
  try {
    // Short ones first (straight to the socket), then a long one moves the writes onto the
    // socket's stream while short ones are still queued, then more of both.
    const sizes = [5, 17, 1, 200_000, 3, 9000, 2, 300_000, 11];
    const parts = sizes.map((n, i) => new Uint8Array(n).fill(i + 1));
    const total = sizes.reduce((a, b) => a + b, 0);
    const reading = readExactly(client, total);
    await Promise.all(parts.map((p) => server.write(p)));
    const got = await reading;
    let at = 0;
    for (const [i, p] of parts.entries()) {
      assert.deepEqual(got.subarray(at, at + p.length), p, `message ${i} out of place`);
      at += p.length;
    }
  } finally {
    server.close();
    client.close();
  }
});

Deno.test("ClientConnection: a write asked while a long one is still going out waits for the ones queued before it", async () => {
  const { server, client } = await pair();
  try {
    // More than the socket buffers hold: it stays pending until the client reads.
    const long = new Uint8Array(16 << 20).fill(1);
    const first = new Uint8Array(7).fill(2);
    const second = new Uint8Array(5).fill(3);
    const writes = [server.write(long), server.write(first)];
    // The long write is under way on the socket's stream by now, `first` queued behind it.
    await new Promise((r) => setTimeout(r, 20));
    writes.push(server.write(second));
    const got = await readExactly(client, long.length + first.length + second.length);
    await Promise.all(writes);
    assert.deepEqual(
      got.subarray(long.length),
      new Uint8Array([2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]),
    );
  } finally {
    server.close();
    client.close();
  }
});

Deno.test("ClientConnection: once a write has failed, later ones fail too", async () => {
  const { server, client } = await pair();
  try {
    client.close();
    // The peer is gone: a write of more than the socket buffers takes fails with a reset or
    // broken pipe, and nothing after it may go out.
    let failed: unknown;
    for (let i = 0; i < 50 && failed === undefined; i++) {
      await server.write(new Uint8Array(1000)).catch((e) => failed = e);
    }
    assert.ok(failed instanceof Error, "no write failed after the peer closed");
    await assert.rejects(server.write(new Uint8Array(10)));
  } finally {
    server.close();
  }
});

Deno.test("ClientConnection: send() puts its messages in one write, in order", async () => {
  const { server, client } = await pair();
  try {
    const reading = readExactly(client, 6);
    await server.send(new Uint8Array([1, 2]), new Uint8Array([3]), new Uint8Array([4, 5, 6]));
    assert.deepEqual(await reading, new Uint8Array([1, 2, 3, 4, 5, 6]));
  } finally {
    server.close();
    client.close();
  }
});
