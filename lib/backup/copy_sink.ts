/**
 * The COPY OUT side of BASE_BACKUP, as PostgreSQL's sink chain sends it (progress → compression
 * → throttle → copystream): `n` for each archive, `d` data of at most 32 kB, `p` progress of the
 * uncompressed tar bytes, `m` before the manifest.
 *
 * @module
 */

import { Duplex } from "node:stream";
import { constants as zlibConstants, createGzip, createZstdCompress } from "node:zlib";
import { Lz4CompressStream } from "../archive/lz4_frame.ts";
import { MessageBuilder } from "../pgwire/messages.ts";

/** `SINK_BUFFER_LENGTH`: the largest data payload of one CopyData. */
export const SINK_BUFFER_LENGTH = 32768;

/** `PROGRESS_REPORT_BYTE_INTERVAL` and `PROGRESS_REPORT_MILLISECOND_THRESHOLD`. */
const PROGRESS_BYTES = 65536;
const PROGRESS_MS = 1000;

/** Coalesce messages into writes of about this size: fewer, larger writes to the socket. */
const FLUSH_BYTES = 1 << 19;

/** Where the messages go. */
export interface MessageSink {
  /** Writes messages in order, as one write. */
  send(...messages: Uint8Array[]): Promise<void>;
}

/** Options of {@linkcode CopySink}. */
export interface CopySinkOptions {
  /** `TARGET 'client'`; with `'blackhole'` only `n`, `p` and `m` go out. */
  sendToClient: boolean;
  /** `MAX_RATE` in kB/s; 0 = unthrottled. */
  maxRateKb: number;
  /**
   * Server-side compression: each archive compressed on its own and named `….gz`, `….lz4` or
   * `….zst`, as `bbsink_gzip`, `bbsink_lz4` and `bbsink_zstd` do.
   */
  compression: "none" | "gzip" | "lz4" | "zstd";
  /** The gzip or zstd level, when the client gave one. */
  level?: number | undefined;
}

/**
 * gzip as a Web stream pair: the platform's stream at zlib's default level (what
 * `Z_DEFAULT_COMPRESSION` gives `bbsink_gzip`), the runtime's zlib when the client chose a level.
 */
function gzipStream(level: number | undefined): {
  writable: WritableStream<BufferSource>;
  readable: ReadableStream<Uint8Array>;
} {
  if (level === undefined) return new CompressionStream("gzip");
  return Duplex.toWeb(createGzip({ level })) as unknown as {
    writable: WritableStream<BufferSource>;
    readable: ReadableStream<Uint8Array>;
  };
}

/** zstd as a Web stream pair, from the runtime's zlib (`ZSTD_CLEVEL_DEFAULT` unless told). */
function zstdStream(level: number | undefined): {
  writable: WritableStream<BufferSource>;
  readable: ReadableStream<Uint8Array>;
} {
  const z = createZstdCompress({
    params: { [zlibConstants.ZSTD_c_compressionLevel]: level ?? 3 },
  });
  return Duplex.toWeb(z) as unknown as {
    writable: WritableStream<BufferSource>;
    readable: ReadableStream<Uint8Array>;
  };
}

function copyData(kind: number, payload?: Uint8Array): Uint8Array {
  const b = new MessageBuilder("d", 1 + (payload?.length ?? 0)).byte(kind);
  if (payload) b.bytes(payload);
  return b.finish();
}

/**
 * The COPY OUT stream of one BASE_BACKUP.
 *
 * @example
 * ```ts
 * import { CopySink } from "./copy_sink.ts";
 * import assert from "node:assert/strict";
 * const sent: Uint8Array[] = [];
 * const sink = new CopySink({ send: async (...m) => void sent.push(...m) }, { sendToClient: true, maxRateKb: 0, compression: "none" });
 * await sink.beginArchive("base.tar", "");
 * await sink.archive(new Uint8Array(1024));
 * await sink.endArchive();
 * assert.equal(sink.bytesDone, 1024);
 * // One write: CopyData 'n' (16 bytes), 'd' with the archive (1030), 'p' (14).
 * assert.equal(sent.length, 1);
 * assert.equal(sent[0]!.length, 16 + 1030 + 14);
 * assert.deepEqual([sent[0]![5], sent[0]![21], sent[0]![1051]], [0x6e, 0x64, 0x70]);
 * ```
 */
export class CopySink {
  /** Uncompressed archive bytes so far, across archives: what `p` reports. */
  bytesDone = 0;
  /** Bytes put on the wire (compressed, when the archives are). */
  bytesSent = 0;
  #out: MessageSink;
  #opts: CopySinkOptions;
  /** Messages assembled in place, sent as one write once about {@linkcode FLUSH_BYTES} long. */
  #buf: Uint8Array = new Uint8Array(FLUSH_BYTES + SINK_BUFFER_LENGTH + 64);
  #view: DataView = new DataView(this.#buf.buffer);
  #pos = 0;
  #inflight: Promise<void> | undefined;
  #inflightBuf: Uint8Array | undefined;
  #spare: Uint8Array | undefined;
  #lastCheck = 0;
  #lastReport = Date.now();
  #throttleStart = Date.now();
  #throttled = 0;
  /** The compressor of the current archive. */
  #gzip: { writer: WritableStreamDefaultWriter<BufferSource>; reading: Promise<void> } | undefined;

  /**
   * Creates the sink of one BASE_BACKUP.
   *
   * @param out The client connection.
   * @param opts Target, rate and compression.
   */
  constructor(out: MessageSink, opts: CopySinkOptions) {
    this.#out = out;
    this.#opts = opts;
  }

  /** Starts an archive: `n`, name and tablespace path (empty for the main directory). */
  async beginArchive(name: string, path: string): Promise<void> {
    const suffix = { none: "", gzip: ".gz", lz4: ".lz4", zstd: ".zst" }[this.#opts.compression];
    const b = new MessageBuilder("d").byte(0x6e).cstring(name + suffix).cstring(path);
    this.#queue(b.finish());
    if (this.#opts.compression !== "none") {
      const cs = this.#opts.compression === "gzip"
        ? gzipStream(this.#opts.level)
        : this.#opts.compression === "lz4"
        ? new Lz4CompressStream() as TransformStream<BufferSource, Uint8Array>
        : zstdStream(this.#opts.level);
      const reading = (async () => {
        for await (const chunk of cs.readable) await this.#data(chunk);
      })();
      reading.catch(() => {});
      this.#gzip = { writer: cs.writable.getWriter(), reading };
    }
    await this.#flushIfFull();
  }

  /** Archive bytes, as the tar stream has them. */
  async archive(bytes: Uint8Array): Promise<void> {
    if (bytes.length === 0) return;
    this.bytesDone += bytes.length;
    if (this.#gzip) await this.#gzip.writer.write(bytes.slice());
    else await this.#data(bytes);
    // As bbsink_copystream_archive_contents: look at the clock only every 64 kB.
    if (this.#lastCheck + PROGRESS_BYTES <= this.bytesDone) {
      this.#lastCheck = this.bytesDone;
      const now = Date.now();
      if (now - this.#lastReport >= PROGRESS_MS || now < this.#lastReport) {
        this.#lastReport = now;
        this.#queue(this.#progress());
      }
    }
    await this.#flushIfFull();
  }

  /** Ends an archive: the compressor drained, and a `p` forced out. */
  async endArchive(): Promise<void> {
    if (this.#gzip) {
      const { writer, reading } = this.#gzip;
      this.#gzip = undefined;
      await writer.close();
      await reading;
    }
    this.#lastCheck = this.bytesDone;
    this.#lastReport = Date.now();
    this.#queue(this.#progress());
    await this.flush();
  }

  /** The manifest: `m`, then its bytes in `d` messages; no progress. */
  async manifest(bytes: Uint8Array): Promise<void> {
    this.#queue(copyData(0x6d));
    for (let at = 0; at < bytes.length; at += SINK_BUFFER_LENGTH) {
      if (this.#opts.sendToClient) this.#queueData(bytes.subarray(at, at + SINK_BUFFER_LENGTH));
      await this.#flushIfFull();
    }
    await this.flush();
  }

  /** Puts anything queued on the wire and waits until the socket has taken it all. */
  async flush(): Promise<void> {
    await this.#send();
    const last = this.#inflight;
    const lastBuf = this.#inflightBuf;
    this.#inflight = undefined;
    this.#inflightBuf = undefined;
    await last;
    if (lastBuf?.length === this.#buf.length) this.#spare = lastBuf;
  }

  /**
   * Hands the queued messages to the socket, keeping at most one earlier write in flight: the
   * next buffer fills while the kernel takes the last one.
   */
  async #send(): Promise<void> {
    if (this.#pos === 0) return;
    const full = this.#buf;
    const out = full.subarray(0, this.#pos);
    this.bytesSent += this.#pos;
    // The socket holds on to the buffer written until the write settles: fill another.
    this.#buf = this.#spare ?? new Uint8Array(full.length);
    this.#spare = undefined;
    this.#view = new DataView(this.#buf.buffer);
    this.#pos = 0;
    const previous = this.#inflight;
    const previousBuf = this.#inflightBuf;
    const write = this.#out.send(out);
    write.catch(() => {}); // observed below or by the next flush
    this.#inflight = write;
    this.#inflightBuf = full;
    await previous;
    // Settled: that buffer is free again.
    if (previousBuf?.length === this.#buf.length) this.#spare = previousBuf;
  }

  /** Aborts the compressor after a failure. */
  abort(): void {
    this.#gzip?.writer.abort().catch(() => {});
    this.#gzip = undefined;
  }

  #progress(): Uint8Array {
    return new MessageBuilder("d").byte(0x70).int64(BigInt(this.bytesDone)).finish();
  }

  #queue(msg: Uint8Array): void {
    this.#room(msg.length);
    this.#buf.set(msg, this.#pos);
    this.#pos += msg.length;
  }

  /** Makes sure `n` more bytes fit, growing the buffer for an outsized message. */
  #room(n: number): void {
    if (this.#pos + n <= this.#buf.length) return;
    const next = new Uint8Array(Math.max(this.#buf.length * 2, this.#pos + n));
    next.set(this.#buf.subarray(0, this.#pos));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }

  /** A `d` message of `payload`, written in place: one copy from the archive to the socket. */
  #queueData(payload: Uint8Array): void {
    this.#room(6 + payload.length);
    const at = this.#pos;
    this.#buf[at] = 0x64;
    this.#view.setInt32(at + 1, 5 + payload.length);
    this.#buf[at + 5] = 0x64;
    this.#buf.set(payload, at + 6);
    this.#pos = at + 6 + payload.length;
  }

  async #data(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length; at += SINK_BUFFER_LENGTH) {
      const piece = bytes.subarray(at, at + SINK_BUFFER_LENGTH);
      if (this.#opts.sendToClient) this.#queueData(piece);
      if (this.#opts.maxRateKb > 0) await this.#throttle(piece.length);
      await this.#flushIfFull();
    }
  }

  /** `bbsink_throttle`: no faster than MAX_RATE on average since the archive stream began. */
  async #throttle(n: number): Promise<void> {
    if (this.#opts.maxRateKb <= 0) return;
    this.#throttled += n;
    const due = this.#throttleStart + (this.#throttled * 1000) / (this.#opts.maxRateKb * 1024);
    const wait = due - Date.now();
    if (wait > 1) {
      await this.flush();
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  async #flushIfFull(): Promise<void> {
    if (this.#pos >= FLUSH_BYTES) await this.#send();
  }
}
