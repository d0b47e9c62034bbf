/**
 * What to try against a relay that just started: the dashboard, `IDENTIFY_SYSTEM` through `psql`,
 * and a `pg_receivewal` that pulls every segment served and stops by itself at the end.
 *
 * @module
 */

import { formatLsn, type Lsn } from "./wal/lsn.ts";
import type { TimelineId } from "./wal/segment.ts";

/** What {@linkcode firstRunExamples} needs of a relay (a `WalRelay` has it all). */
export interface ExampleSource {
  /** Address the replication listener is bound to. */
  hostname: string;
  /** Its port. */
  port: number;
  /** The status server, when there is one. */
  http?: { url: string } | undefined;
  /** The WAL served. */
  store: {
    dir: string;
    identity: { systemId: bigint };
    endLsn: Lsn;
    timelines(): TimelineId[];
    segments(tli: TimelineId): { name: string }[];
  };
}

/** The host a client on this machine uses to reach a listener bound to `hostname`. */
function clientHost(hostname: string): string {
  if (hostname === "0.0.0.0" || hostname === "") return "127.0.0.1";
  if (hostname === "::" || hostname === "[::]") return "::1";
  return hostname;
}

/**
 * The commands to try, as lines for the terminal. The `pg_receivewal` line starts from an empty
 * `.partial` of the oldest segment, as pg_receivewal resumes from the newest file in its
 * directory and would otherwise start at the end; `--endpos` is one byte short of the end served,
 * since pg_receivewal stops only once it has received WAL past it.
 *
 * @param user The user name the commands connect as.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { firstRunExamples } from "./first_run.ts";
 * const text = firstRunExamples({
 *   hostname: "127.0.0.1",
 *   port: 5433,
 *   http: { url: "http://127.0.0.1:9433/" },
 *   store: {
 *     dir: "testdata/wal",
 *     identity: { systemId: 7711872075948452854n },
 *     endLsn: 0xC00000n,
 *     timelines: () => [1, 2],
 *     segments: (tli) => tli === 1 ? [{ name: "000000010000000000000006" }] : [],
 *   },
 * });
 * assert.match(text, /--endpos 0\/BFFFFF/);
 * assert.match(text, /touch \$D\/000000010000000000000006\.partial/);
 * ```
 */
export function firstRunExamples(relay: ExampleSource, user = "repl"): string {
  const host = clientHost(relay.hostname);
  const { store } = relay;
  const lines = [
    `walrelay serves ${store.dir} (system ${store.identity.systemId}, WAL up to ${
      formatLsn(store.endLsn)
    }). Try, in another shell:`,
    "",
  ];
  if (relay.http) {
    lines.push("  The dashboard:", `    ${relay.http.url}`);
  }
  lines.push(
    "  Identify the system:",
    `    psql "host=${host} port=${relay.port} user=${user} replication=true" -c IDENTIFY_SYSTEM`,
  );
  const first = store.timelines().map((tli) => store.segments(tli)[0]).find((f) => f);
  if (first && store.endLsn > 0n) {
    const segment = first.name.replace(/\.partial$/, "");
    lines.push(
      "  Pull every segment into a new directory; pg_receivewal stops by itself at the end:",
      `    D=$(mktemp -d) && touch $D/${segment}.partial && ` +
        `pg_receivewal -h ${host} -p ${relay.port} -U ${user} -D $D ` +
        `--endpos ${formatLsn(store.endLsn - 1n)} -v && ls $D`,
    );
  }
  lines.push("", "Ctrl-C stops the relay once every client has all WAL.");
  return lines.join("\n");
}
