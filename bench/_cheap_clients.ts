/**
 * Replication clients that cost little, for measuring a relay's own ceiling: `N` connections in
 * one process, each `START_REPLICATION` from `START` and reading until it has WAL up to `END`.
 * Only the message headers are looked at (and the first bytes of each XLogData, for its
 * position); the WAL itself is dropped, no status update is sent, nothing is written to disk.
 *
 * `deno run -A bench/_cheap_clients.ts PORT N TLI START END` prints one JSON line: wall seconds
 * from the first connection to the last byte, the bytes received, and the process's CPU seconds.
 *
 * @module
 */

import process from "node:process";
import { formatLsn, parseLsn } from "./_util.ts";

const enc = new TextEncoder();

function message(type: number, body: Uint8Array): Uint8Array {
  const m = new Uint8Array(5 + body.length);
  m[0] = type;
  new DataView(m.buffer).setInt32(1, 4 + body.length);
  m.set(body, 5);
  return m;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/**
 * Reads whole messages until ReadyForQuery or CopyBothResponse; throws on ErrorResponse. Returns
 * how many bytes after it were read too, moved to the front of `buf` (a server may send the
 * first XLogData right behind CopyBothResponse).
 */
async function untilReady(conn: Deno.Conn, buf: Uint8Array): Promise<number> {
  let have = 0;
  while (true) {
    while (have >= 5) {
      const len = new DataView(buf.buffer, buf.byteOffset).getInt32(1);
      if (have < 1 + len) break;
      const type = String.fromCharCode(buf[0]!);
      if (type === "E") throw new Error(new TextDecoder().decode(buf.subarray(5, 1 + len)));
      buf.copyWithin(0, 1 + len, have);
      have -= 1 + len;
      if (type === "Z" || type === "W") {
        if (type === "Z" && have !== 0) throw new Error("data after ReadyForQuery");
        return have;
      }
    }
    const n = await conn.read(buf.subarray(have));
    if (n === null) throw new Error("connection closed");
    have += n;
  }
}

/** Streams from `start` to `end` on one connection; returns the bytes read. */
async function pull(port: number, tli: number, start: bigint, end: bigint): Promise<number> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const buf = new Uint8Array(1 << 20);
  try {
    const params = enc.encode("user\0postgres\0replication\0true\0\0");
    const startup = new Uint8Array(8 + params.length);
    new DataView(startup.buffer).setInt32(0, startup.length);
    new DataView(startup.buffer).setInt32(4, 196608);
    startup.set(params, 8);
    await writeAll(conn, startup);
    await untilReady(conn, buf);
    const q = `START_REPLICATION PHYSICAL ${formatLsn(start)} TIMELINE ${tli}\0`;
    await writeAll(conn, message(0x51, enc.encode(q)));
    let early = await untilReady(conn, buf);
    // A little state machine over the byte stream: a 5-byte header, then for CopyData the first
    // 9 bytes of the body ('w' and the data start), then the rest skipped.
    const head = new Uint8Array(14);
    let headHave = 0;
    let skip = 0;
    let received = 0;
    let reached = start;
    while (reached < end) {
      const n = early > 0 ? early : await conn.read(buf);
      early = 0;
      if (n === null) throw new Error("connection closed before the end");
      received += n;
      let i = 0;
      while (i < n) {
        if (skip > 0) {
          const s = Math.min(skip, n - i);
          skip -= s;
          i += s;
          continue;
        }
        const want = headHave < 5 ? 5 : 14;
        const take = Math.min(want - headHave, n - i);
        head.set(buf.subarray(i, i + take), headHave);
        headHave += take;
        i += take;
        if (headHave < want) continue;
        const dv = new DataView(head.buffer);
        const len = dv.getInt32(1) - 4;
        if (headHave === 5 && (head[0] !== 0x64 || len < 9)) {
          if (head[0] === 0x45) throw new Error("ErrorResponse while streaming");
          skip = len;
          headHave = 0;
          continue;
        }
        if (headHave === 14) {
          if (head[5] === 0x77) {
            reached = dv.getBigUint64(6) + BigInt(len - 25);
          }
          skip = len - 9;
          headHave = 0;
        }
      }
    }
    return received;
  } finally {
    try {
      conn.close();
    } catch { /* closed */ }
  }
}

if (import.meta.main) {
  const [port, count, tli, start, end] = Deno.args;
  const t0 = performance.now();
  const bytes = await Promise.all(
    Array.from(
      { length: Number(count) },
      () => pull(Number(port), Number(tli), parseLsn(start!), parseLsn(end!)),
    ),
  );
  const cpu = process.cpuUsage();
  console.log(JSON.stringify({
    seconds: (performance.now() - t0) / 1000,
    bytes: bytes.reduce((a, b) => a + b, 0),
    cpu: (cpu.user + cpu.system) / 1e6,
  }));
}
