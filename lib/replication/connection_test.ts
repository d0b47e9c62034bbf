import assert from "node:assert/strict";
import { readFull } from "../_io.ts";
import { connectionPair } from "./_test_utils.ts";

/** The next `n` bytes the client receives. */
async function receive(conn: Deno.Conn, n: number): Promise<Uint8Array> {
  const out = new Uint8Array(n);
  assert.equal(await readFull(conn, out), n, "the connection ended early");
  return out;
}

Deno.test("ClientConnection: short and long writes, not awaited, reach the socket in order", async () => {
  using pair = await connectionPair();
  const { server, client } = pair;
  // Short and long ones mixed, none awaited before the next is asked: each waits for the one
  // before it, whatever its length.
  const sizes = [5, 17, 1, 200_000, 3, 9000, 2, 300_000, 11];
  const parts = sizes.map((n, i) => new Uint8Array(n).fill(i + 1));
  const reading = receive(client, sizes.reduce((a, b) => a + b, 0));
  await Promise.all(parts.map((p) => server.write(p)));
  const got = await reading;
  let at = 0;
  for (const [i, p] of parts.entries()) {
    assert.deepEqual(got.subarray(at, at + p.length), p, `message ${i} out of place`);
    at += p.length;
  }
});

Deno.test("ClientConnection: a write asked while a long one is still going out waits for the ones queued before it", async () => {
  using pair = await connectionPair();
  const { server, client } = pair;
  // More than the socket buffers can hold (tcp_rmem's and tcp_wmem's maxima, 32 and 4 MB here):
  // it stays pending until the client reads.
  const long = new Uint8Array(64 << 20).fill(1);
  const first = new Uint8Array(7).fill(2);
  const second = new Uint8Array(5).fill(3);
  const writes = [server.write(long), server.write(first)];
  // The long write is under way by now, in several writes of what the socket takes, `first`
  // queued behind it.
  await new Promise((r) => setTimeout(r, 20));
  writes.push(server.write(second));
  const got = await receive(client, long.length + first.length + second.length);
  await Promise.all(writes);
  assert.deepEqual(got.subarray(long.length), new Uint8Array([2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3]));
});

Deno.test("ClientConnection: once a write has failed, later ones fail too", async () => {
  const { server, client } = await connectionPair();
  client.close();
  try {
    // The peer is gone: writing fails with a reset or a broken pipe soon, and nothing after
    // the failure may go out.
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
  using pair = await connectionPair();
  const reading = receive(pair.client, 6);
  await pair.server.send(new Uint8Array([1, 2]), new Uint8Array([3]), new Uint8Array([4, 5, 6]));
  assert.deepEqual(await reading, new Uint8Array([1, 2, 3, 4, 5, 6]));
});
