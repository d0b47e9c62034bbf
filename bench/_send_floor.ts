/**
 * What sending WAL costs Deno with nothing of a relay around it: a server just sufficient for
 * `_cheap_clients.ts` (trust, `START_REPLICATION`, then XLogData) that sends every client runs of
 * the relay's `RUN_MESSAGES` 128 kB messages, one write each, from 32 MiB of buffers framed once,
 * as the relay's block cache holds them. Nothing is read from disk, validated or cached; only the
 * headers' positions are written per run. It shows what part of the relay's CPU for the same bytes
 * is the kernel's copies and Deno's socket writes, and what part is the relay's own.
 *
 * `deno run -A bench/_send_floor.ts PORT bare|streams`: `bare` writes from a plain loop; `streams`
 * passes each run through a Web Streams pipeline of the relay's shape (a pulled source, two
 * transforms, a sink that writes), so that its cost can be told from the rest. Serves until
 * killed.
 *
 * @module
 */

import { readFull, writeAll } from "../lib/_io.ts";
import { authenticationOk, copyBothResponse, readyForQuery } from "../lib/pgwire/messages.ts";
import { pgTimestampNow } from "../lib/pgwire/timestamp.ts";
import { RUN_MESSAGES as RUN } from "../lib/replication/streaming.ts";
import { FRAME_HEADROOM, MAX_SEND_SIZE as PAYLOAD } from "../lib/stream/chunk.ts";
import { parseLsn } from "../lib/wal/lsn.ts";

const SLOT = FRAME_HEADROOM + PAYLOAD;
/** Runs in 32 MiB, the relay's block cache. */
const BUFFERS = (32 << 20) / (RUN * PAYLOAD);

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
  const now = pgTimestampNow();
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

/** Reads one message's body as text (of the startup packet when `startup`), or `null` at the end. */
async function readMessage(conn: Deno.Conn, startup: boolean): Promise<string | null> {
  const head = new Uint8Array(startup ? 4 : 5);
  if (await readFull(conn, head) < head.length) return null;
  const body = new Uint8Array(new DataView(head.buffer).getInt32(startup ? 0 : 1) - 4);
  if (await readFull(conn, body) < body.length) return null;
  return new TextDecoder().decode(body);
}

async function serve(conn: Deno.Conn): Promise<void> {
  if (await readMessage(conn, true) === null) return;
  await writeAll(conn, authenticationOk());
  await writeAll(conn, readyForQuery());
  const query = await readMessage(conn, false);
  const start = parseLsn(query?.match(/START_REPLICATION (?:PHYSICAL )?(\S+)/i)?.[1] ?? "");
  if (start === undefined) return;
  let lsn = start;
  await writeAll(conn, copyBothResponse());
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
