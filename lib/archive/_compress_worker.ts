/**
 * The worker thread of `SegmentCompressor`: compresses one completed segment file into a
 * temporary file beside it and fsyncs that, so the streaming thread never spends its time in an
 * encoder. Not part of the public API.
 *
 * @module
 */

import { compressBytes, type CompressFormat } from "./compress.ts";

const scope = self as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage(message: unknown): void;
};

scope.onmessage = async (e: MessageEvent) => {
  const { id, from, to, format } = e.data as {
    id: number;
    from: string;
    to: string;
    format: CompressFormat;
  };
  try {
    const plain = await Deno.readFile(from);
    const packed = await compressBytes(plain, format);
    using f = await Deno.open(to, { write: true, create: true, truncate: true, mode: 0o600 });
    let off = 0;
    while (off < packed.length) off += await f.write(packed.subarray(off));
    await f.syncData();
    scope.postMessage({ id, plainBytes: plain.length, bytes: packed.length });
  } catch (err) {
    const { name, message } = err instanceof Error ? err : new Error(String(err));
    scope.postMessage({ id, error: { name, message } });
  }
};
