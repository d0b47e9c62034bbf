/**
 * Server-side TLS on an already accepted connection. Deno cannot start TLS on a server socket, so
 * after the `S` answer the raw bytes are piped both ways into an in-process TLS listener on an
 * ephemeral loopback port; the connection that listener accepts is the decrypted session.
 *
 * @module
 */

import { writeAll } from "../_io.ts";
import { certificateHash } from "./certificate_hash.ts";

/** Certificate and key, PEM. */
export interface TlsFiles {
  /** Certificate chain, PEM. */
  cert: string;
  /** Private key, PEM. */
  key: string;
}

/**
 * Upgrades accepted TCP connections to TLS.
 *
 * @example
 * ```ts ignore
 * import { TlsBridge } from "./tls_bridge.ts";
 * const bridge = await TlsBridge.start({ cert: "...", key: "..." });
 * const tls = await bridge.upgrade(rawConn, new Uint8Array());
 * ```
 */
export class TlsBridge {
  #listener: Deno.TlsListener;
  #waiting = new Map<number, PromiseWithResolvers<Deno.TlsConn>>();
  // Accepted before `upgrade` learned its port: the accept can complete before the connect's
  // await resumes. Kept briefly, by the connecting side's port.
  #early = new Map<number, { conn: Deno.TlsConn; timer: ReturnType<typeof setTimeout> }>();
  #loop: Promise<void>;
  /**
   * The `tls-server-end-point` channel binding data of the server certificate, or `undefined`
   * when its signature algorithm does not define one (then SCRAM-SHA-256-PLUS is not offered).
   */
  readonly channelBinding: Uint8Array | undefined;

  private constructor(listener: Deno.TlsListener, channelBinding: Uint8Array | undefined) {
    this.#listener = listener;
    this.channelBinding = channelBinding;
    this.#loop = this.#acceptLoop();
  }

  /** Starts the loopback TLS listener with a certificate and key (PEM text). */
  static async start(files: TlsFiles): Promise<TlsBridge> {
    const binding = await certificateHash(firstCertificateDer(files.cert));
    const listener = Deno.listenTls({
      hostname: "127.0.0.1",
      port: 0,
      cert: files.cert,
      key: files.key,
      alpnProtocols: ["postgresql"],
    });
    return new TlsBridge(listener, binding);
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        const port = (conn.remoteAddr as Deno.NetAddr).port;
        const w = this.#waiting.get(port);
        if (w) {
          this.#waiting.delete(port);
          w.resolve(conn);
        } else {
          const timer = setTimeout(() => {
            this.#early.delete(port);
            conn.close(); // not one of ours
          }, 10_000);
          this.#early.get(port)?.conn.close();
          this.#early.set(port, { conn, timer });
        }
      }
    } catch { /* listener closed */ }
  }

  /**
   * Runs the TLS handshake for `raw`, whose client has been told `S` (or spoke TLS directly).
   * `prefix` holds bytes already read from `raw` that belong to the handshake.
   *
   * @returns The decrypted connection and the negotiated ALPN protocol.
   */
  async upgrade(
    raw: Deno.Conn,
    prefix: Uint8Array,
  ): Promise<{ conn: Deno.TlsConn; alpnProtocol: string | null; close: () => void }> {
    const addr = this.#listener.addr as Deno.NetAddr;
    const inner = await Deno.connect({ hostname: "127.0.0.1", port: addr.port });
    const localPort = (inner.localAddr as Deno.NetAddr).port;
    const accepted = Promise.withResolvers<Deno.TlsConn>();
    const early = this.#early.get(localPort);
    if (early) {
      this.#early.delete(localPort);
      clearTimeout(early.timer);
      accepted.resolve(early.conn);
    } else {
      this.#waiting.set(localPort, accepted);
    }
    let fallback: ReturnType<typeof setTimeout> | undefined;
    let closed = false;
    const closeAll = () => {
      closed = true;
      clearTimeout(fallback);
      for (const c of [inner, raw]) {
        try {
          c.close();
        } catch { /* closed */ }
      }
    };
    // Client → TLS listener: what was already read, then the rest of the socket.
    (async () => {
      try {
        if (prefix.length) await writeAll(inner, prefix);
        await pump(raw, inner);
      } catch { /* either side gone */ }
      closeAll();
    })();
    // TLS listener → client.
    (async () => {
      try {
        await pump(inner, raw);
      } catch { /* either side gone */ }
      closeAll();
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const conn = await Promise.race([
        accepted.promise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("TLS bridge accept timed out")), 10_000);
        }),
      ]);
      const info = await conn.handshake();
      return {
        conn,
        alpnProtocol: info.alpnProtocol,
        // Closing the TLS side lets the bridge forward what is still in flight (a FATAL, say)
        // and end by itself; the fallback covers a peer that never lets it drain.
        close: () => {
          try {
            conn.close();
          } catch { /* closed */ }
          if (!closed) fallback ??= setTimeout(closeAll, 2000);
        },
      };
    } catch (e) {
      this.#waiting.delete(localPort);
      closeAll();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops the listener. */
  close(): void {
    try {
      this.#listener.close();
    } catch { /* closed */ }
    for (const { conn, timer } of this.#early.values()) {
      clearTimeout(timer);
      try {
        conn.close();
      } catch { /* closed */ }
    }
    this.#early.clear();
  }

  /** Resolves when the accept loop has ended. */
  get finished(): Promise<void> {
    return this.#loop;
  }
}

/** A pump's buffer while little passes, and at most. */
const PUMP_MIN = 4096;
const PUMP_MAX = 65536;

/**
 * Copies `from` to `to` until `from` ends. A pending read holds its buffer for as long as the peer
 * is silent, and an idle connection has two pumps: so a buffer grows only while reads fill it (WAL
 * going out), and goes back to the small one after a read that would have fitted in it.
 */
async function pump(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  let buf = new Uint8Array(PUMP_MIN);
  while (true) {
    const n = await from.read(buf);
    if (n === null) return;
    await writeAll(to, buf.subarray(0, n));
    if (n === buf.length) {
      if (buf.length < PUMP_MAX) buf = new Uint8Array(buf.length * 4);
    } else if (n <= PUMP_MIN && buf.length > PUMP_MIN) {
      buf = new Uint8Array(PUMP_MIN);
    }
  }
}

/** The DER bytes of the first certificate in a PEM bundle. */
export function firstCertificateDer(pem: string): Uint8Array {
  const m = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new Error("no certificate found in the PEM file");
  return Uint8Array.fromBase64(m[1]!.replace(/\s+/g, ""));
}
