/**
 * The upstream link as the status page shows it.
 *
 * @module
 */

import type { UpstreamProvider, UpstreamStatus } from "../http/status.ts";
import type { UpstreamReceiver } from "./receiver.ts";

/**
 * Adapts the receiver's state for `/status`, `/metrics` and `/healthz`. The lag is the time since
 * the relay last had on disk everything the upstream had reported as its end: 0 while caught up,
 * growing while it falls behind or the link is down.
 *
 * @example
 * ```ts ignore
 * const provider = upstreamProvider(receiver);
 * provider.status().lagSeconds;
 * ```
 */
export function upstreamProvider(receiver: UpstreamReceiver): UpstreamProvider {
  let caughtUpAt = Date.now();
  return {
    status(): UpstreamStatus {
      const s = receiver.status;
      const now = Date.now();
      const caughtUp = s.connected && s.flushedLsn !== undefined &&
        (s.upstreamEndLsn === undefined || s.flushedLsn >= s.upstreamEndLsn);
      if (caughtUp) caughtUpAt = now;
      return {
        conninfo: s.conninfo,
        connected: s.connected,
        state: s.connected ? "streaming" : s.lastError ? "disconnected" : "connecting",
        receivedLsn: s.receivedLsn,
        flushedLsn: s.flushedLsn,
        lagSeconds: caughtUp ? 0 : (now - caughtUpAt) / 1000,
        lastMessageTime: s.lastMessageTime,
        server: s.server,
        storeError: s.storeError,
        divergence: s.divergence,
        walIo: s.walIo,
      };
    },
  };
}
