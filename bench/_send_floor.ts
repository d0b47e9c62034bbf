/**
 * What sending WAL costs Deno with nothing of a relay around it: a server just sufficient for
 * `_cheap_clients.ts` (trust, `START_REPLICATION`, then XLogData) that sends every client runs of
 * four 128 kB messages, 512 kB a write, from 32 MiB of buffers framed once, as the relay's block
 * cache holds them. Nothing is read from disk, validated or cached; only the headers' positions
 * are written per run. It shows what part of the relay's CPU for the same bytes is the kernel's
 * copies and Deno's socket writes, and what part is the relay's own.
 *
 * `deno run -A bench/_send_floor.ts PORT bare|streams`: `bare` writes from a plain loop; `streams`
 * passes each run through a Web Streams pipeline of the relay's shape (a pulled source, two
 * transforms, a sink that writes), so that its cost can be told from the rest. Serves until
 * killed.
 *
 * @module
 */

const RUN = 4;
const PAYLOAD = 128 * 1024;
const HEADER = 1 + 4 + 1 + 8 + 8 + 8;
const SLOT = HEADER + PAYLOAD;
const BUFFERS = 64;

const [portArg, mode] = Deno.args;
if (!portArg || (mode !== "bare" && mode !== "streams")) {
  console.error("usage: deno run -A bench/_send_floor.ts PORT bare|streams");
  Deno.exit(2);
}

// Distinct buffers, so the kernel copies from memory rather than from the processor's cache.
const buffers = Array.from({ length: BUFFERS }, () => {
  const b = new Uint8Array(RUN * SLOT);
  for (let i = 0; i < b.length; i += 4096) b[i] = i & 0xff;
  return b;
});

/** Writes the run's four XLogData headers for WAL from `lsn`. */
function frame(run: Uint8Array, lsn: bigint, end: bigint): void {
  const v = new DataView(run.buffer, run.byteOffset, run.byteLength);
  const now = BigInt(Date.now()) * 1000n;
  for (let i = 0; i < RUN; i++) {
    const at = i * SLOT;
    run[at] = 0x64;
    v.setInt32(at + 1, 4 + 25 + PAYLOAD);
    run[at + 5] = 0x77;
    v.setBigUint64(at + 6, lsn + BigInt(i * PAYLOAD));
    v.setBigUint64(at + 14, end);
    v.setBigInt64(at + 22, now);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) {
    off += await conn.write(off === 0 ? bytes : bytes.subarray(off));
  }
}

/** Reads one message (type and body), or the startup packet when `startup`. */
async function readMessage(conn: Deno.Conn, startup: boolean): Promise<string | null> {
  const head = new Uint8Array(startup ? 4 : 5);
  const readFull = async (b: Uint8Array): Promise<boolean> => {
    for (let off = 0; off < b.length;) {
      const n = await conn.read(b.subarray(off));
      if (n === null) return false;
      off += n;
    }
    return true;
  };
  if (!await readFull(head)) return null;
  const len = new DataView(head.buffer).getInt32(startup ? 0 : 1);
  const body = new Uint8Array(len - 4);
  if (!await readFull(body)) return null;
  return new TextDecoder().decode(body);
}

function message(type: string, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const m = new Uint8Array(5 + body.length);
  m[0] = type.charCodeAt(0);
  new DataView(m.buffer).setInt32(1, 4 + body.length);
  m.set(body, 5);
  return m;
}

async function serve(conn: Deno.Conn): Promise<void> {
  if (await readMessage(conn, true) === null) return;
  await writeAll(conn, message("R", new Uint8Array(4)));
  await writeAll(conn, message("Z", new Uint8Array([0x49])));
  const query = await readMessage(conn, false);
  const m = query?.match(/START_REPLICATION (?:PHYSICAL )?([0-9A-F]+)\/([0-9A-F]+)/i);
  if (!m) return;
  let lsn = (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
  await writeAll(conn, message("W", new Uint8Array([0, 0, 0])));
  // The clients stop at an end of their own: send until they hang up.
  let next = 0;
  const end = 1n << 62n;
  const take = (): Uint8Array => {
    const run = buffers[next++ % BUFFERS]!;
    frame(run, lsn, end);
    lsn += BigInt(RUN * PAYLOAD);
    return run;
  };
  try {
    if (mode === "bare") {
      while (true) await writeAll(conn, take());
    }
    await new ReadableStream<{ run: Uint8Array }>({
      pull(controller) {
        controller.enqueue({ run: take() });
      },
    }, { highWaterMark: 0 })
      .pipeThrough(new TransformStream({ transform: (c, ctl) => ctl.enqueue(c) }))
      .pipeThrough(new TransformStream({ transform: (c, ctl) => ctl.enqueue(c.run) }))
      .pipeTo(new WritableStream({ write: (run) => writeAll(conn, run) }));
  } catch {
    // The client hung up.
  }
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(portArg) });
for await (const conn of listener) {
  serve(conn).finally(() => {
    try {
      conn.close();
    } catch { /* closed */ }
  });
}
