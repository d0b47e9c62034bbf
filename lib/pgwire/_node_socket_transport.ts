/**
 * A `node:tls` socket read and written as a Deno connection, so that the client speaks one
 * interface whether or not TLS is in use.
 *
 * @module
 */

import type net from "node:net";
import type { Transport } from "./client_transport.ts";

/**
 * A `node:tls` socket as a {@linkcode Transport}. TLS goes through `node:tls`, not
 * `Deno.startTls`: only `node:tls` can skip the chain check (libpq's `sslmode=require`), present a
 * client certificate, and trust `sslrootcert` alone (`Deno.startTls` adds its `caCerts` to the
 * default store, so `verify-ca` would also accept any publicly trusted certificate).
 */
export class NodeSocketTransport implements Transport {
  #sock: net.Socket;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #error: Error | undefined;
  #wake: (() => void) | undefined;
  #onData = (c: Uint8Array) => {
    this.#chunks.push(new Uint8Array(c.buffer, c.byteOffset, c.byteLength));
    // Backpressure: stop reading from the kernel while a few chunks wait for the consumer.
    if (this.#chunks.length > 64) this.#sock.pause();
    this.#notify();
  };
  #onEnd = () => {
    this.#ended = true;
    this.#notify();
  };
  #onError = (e: Error) => {
    this.#error = e;
    this.#notify();
  };

  /** Reads and writes `sock` from now on. */
  constructor(sock: net.Socket) {
    this.#sock = sock;
    sock.on("data", this.#onData);
    sock.on("end", this.#onEnd);
    sock.on("close", this.#onEnd);
    sock.on("error", this.#onError);
  }

  #notify(): void {
    const w = this.#wake;
    this.#wake = undefined;
    w?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((r) => this.#wake = r);
    }
    const c = this.#chunks[0]!;
    const n = Math.min(c.length, p.length);
    p.set(c.subarray(0, n));
    if (n === c.length) this.#chunks.shift();
    else this.#chunks[0] = c.subarray(n);
    if (this.#chunks.length <= 16) this.#sock.resume();
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#sock.write(p, (e) => (e ? reject(e) : resolve(p.length)));
    });
  }

  close(): void {
    this.#sock.destroy();
  }
}
