/**
 * `/metrics`: the relay's state in Prometheus' text exposition format (version 0.0.4). LSNs are
 * byte positions, lags are seconds, counters end in `_total`.
 *
 * @module
 */

import type { CacheStatus, RelayStatus } from "./status.ts";
import { parseLsn } from "../wal/lsn.ts";
import { baseBackupMetrics } from "../backup/status.ts";
import { WAL_FILE_OUTCOMES } from "./wal_files.ts";

/** The `Content-Type` of the exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string | number>;
type Value = number | bigint;

/** Builds one exposition document, metric family by metric family. */
class Exposition {
  #lines: string[] = [];

  family(
    name: string,
    type: "gauge" | "counter",
    help: string,
    samples: [Labels, Value][],
  ): void {
    this.#lines.push(`# HELP ${name} ${help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n")}`);
    this.#lines.push(`# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const l = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(String(v))}"`);
      this.#lines.push(`${name}${l.length ? `{${l.join(",")}}` : ""} ${formatValue(value)}`);
    }
  }

  toString(): string {
    return this.#lines.join("\n") + "\n";
  }
}

function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

function formatValue(v: Value): string {
  if (typeof v === "bigint") return v.toString();
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function lsnBytes(text: string | null): bigint | undefined {
  return text === null ? undefined : parseLsn(text);
}

/**
 * Renders a `/status` document as Prometheus metrics. Per-client series carry `pid`,
 * `application_name` and `client_addr` labels; NULL positions and lags are left out.
 * `walFileRequests` are the `/wal/` requests by outcome.
 *
 * @example
 * ```ts ignore
 * import { renderMetrics } from "./metrics.ts";
 * const text = renderMetrics(model.snapshot());
 * ```
 */
export function renderMetrics(
  status: RelayStatus,
  walFileRequests?: ReadonlyMap<string, number>,
): string {
  const m = new Exposition();
  m.family("walrelay_info", "gauge", "Version and served cluster of the relay.", [[{
    version: status.version,
    crc32c: status.crc32c,
    system_identifier: status.store.system_identifier,
    server_version: status.store.server_version,
  }, 1]]);
  m.family(
    "walrelay_start_time_seconds",
    "gauge",
    "When the relay started, in seconds since the epoch.",
    [[{}, Date.parse(status.started_at) / 1000]],
  );

  const mem = status.memory;
  m.family(
    "walrelay_resident_memory_bytes",
    "gauge",
    "Resident set size of the relay process.",
    [[{}, mem.rss_bytes]],
  );
  m.family(
    "walrelay_heap_memory_bytes",
    "gauge",
    "The main thread's JavaScript heap (total, used) and its memory outside the heap (external).",
    [[{ kind: "total" }, mem.heap_total_bytes], [{ kind: "used" }, mem.heap_used_bytes], [
      { kind: "external" },
      mem.external_bytes,
    ]],
  );

  // The store.
  const store = status.store;
  m.family("walrelay_store_timeline", "gauge", "Newest timeline in the WAL directory.", [[
    {},
    store.timeline,
  ]]);
  m.family(
    "walrelay_store_valid_end_lsn_bytes",
    "gauge",
    "Durable, valid end of WAL that may be sent, as a byte position.",
    [[{}, lsnBytes(store.valid_end_lsn) ?? 0n]],
  );
  m.family("walrelay_store_bytes", "gauge", "Bytes of WAL segment files on disk.", [[
    {},
    store.bytes_on_disk,
  ]]);
  m.family(
    "walrelay_store_segments",
    "gauge",
    "Segment files per timeline.",
    store.timelines.map((t) => [{ timeline: t.timeline }, t.segments]),
  );
  m.family("walrelay_store_segment_size_bytes", "gauge", "wal_segment_size of the WAL served.", [[
    {},
    store.segment_size,
  ]]);

  // Throughput and totals.
  m.family("walrelay_wal_sent_bytes_total", "counter", "WAL bytes sent to all clients.", [[
    {},
    status.totals.wal_bytes_sent,
  ]]);
  m.family(
    "walrelay_wal_sent_bytes_per_second",
    "gauge",
    "WAL send rate over the last sampling interval.",
    [[{}, status.throughput.sent_bytes_per_second]],
  );
  m.family(
    "walrelay_wal_received_bytes_per_second",
    "gauge",
    "Rate at which the durable end advanced over the last sampling interval.",
    [[{}, status.throughput.received_bytes_per_second]],
  );
  m.family(
    "walrelay_connections_accepted_total",
    "counter",
    "Connections accepted on the replication port.",
    [[{}, status.totals.connections_accepted]],
  );
  m.family(
    "walrelay_connections_authorized_total",
    "counter",
    "Replication connections that passed authentication.",
    [[{}, status.totals.connections_authorized]],
  );
  m.family(
    "walrelay_disconnections_total",
    "counter",
    "Replication connections that ended.",
    [[{}, status.totals.disconnections]],
  );
  m.family(
    "walrelay_errors_total",
    "counter",
    "Errors reported to clients, by SQLSTATE.",
    Object.entries(status.totals.errors).map(([sqlstate, n]) => [{ sqlstate }, n]),
  );
  m.family(
    "walrelay_wal_files_damaged_total",
    "counter",
    "Complete WAL segment files that failed validation before being served (once per file version).",
    [[{}, status.totals.wal_files_damaged]],
  );
  m.family(
    "walrelay_store_write_failures_total",
    "counter",
    "Failed file operations writing WAL into the directory (write, extend, fdatasync, rename…).",
    Object.entries(status.totals.write_failures).map(([operation, n]) => [{ operation }, n]),
  );

  // The caches the senders share.
  const caches = Object.entries(status.caches).flatMap(([cache, c]) => c ? [{ cache, c }] : []);
  for (
    const [name, type, help, value] of [
      ["hits_total", "counter", "Reads answered from the cache, by cache.", (c) => c.hits],
      [
        "misses_total",
        "counter",
        "Reads that filled the cache (a file read, an archived file decoded), by cache.",
        (c) => c.misses,
      ],
      [
        "evictions_total",
        "counter",
        "Entries dropped to stay within the cache's size, by cache.",
        (c) => c.evictions,
      ],
      ["bytes", "gauge", "Bytes held by the cache.", (c) => c.bytes],
      ["max_bytes", "gauge", "Bytes the cache holds at most.", (c) => c.max_bytes],
    ] as const satisfies readonly (readonly [
      string,
      "gauge" | "counter",
      string,
      (c: CacheStatus) => number,
    ])[]
  ) {
    m.family(
      `walrelay_cache_${name}`,
      type,
      help,
      caches.map(({ cache, c }) => [{ cache }, value(c)]),
    );
  }

  m.family(
    "walrelay_archive_decode_seconds_total",
    "counter",
    "Seconds spent reading and decoding archived WAL files, on every thread.",
    [[{}, status.caches.archive_segments.decode_seconds]],
  );

  // Senders, as pg_stat_replication.
  m.family("walrelay_senders", "gauge", "Connected replication clients, by state.", [
    ...["startup", "backup", "catchup", "streaming", "stopping"].map((state): [Labels, Value] => [
      { state },
      status.senders.filter((s) => s.state === state).length,
    ]),
  ]);
  m.family("walrelay_max_senders", "gauge", "max_wal_senders of the relay.", [[
    {},
    status.max_senders,
  ]]);
  const who = (s: RelayStatus["senders"][number]): Labels => ({
    pid: s.pid,
    application_name: s.application_name,
    client_addr: s.client_addr,
  });
  for (
    const [col, help] of [
      ["sent", "End of WAL sent to the client, as a byte position."],
      ["write", "Position the client reports written, as a byte position."],
      ["flush", "Position the client reports flushed, as a byte position."],
      ["replay", "Position the client reports replayed, as a byte position."],
    ] as const
  ) {
    m.family(
      `walrelay_sender_${col}_lsn_bytes`,
      "gauge",
      help,
      status.senders.flatMap((s): [Labels, Value][] => {
        const v = lsnBytes(s[`${col}_lsn`]);
        return v === undefined ? [] : [[who(s), v]];
      }),
    );
  }
  for (const col of ["write", "flush", "replay"] as const) {
    m.family(
      `walrelay_sender_${col}_lag_seconds`,
      "gauge",
      `pg_stat_replication.${col}_lag: time between the relay having WAL and the client ` +
        `reporting it ${col === "replay" ? "replayed" : col === "write" ? "written" : "flushed"}.`,
      status.senders.flatMap((s): [Labels, Value][] => {
        const v = s[`${col}_lag`];
        return v === null ? [] : [[who(s), v]];
      }),
    );
  }
  m.family(
    "walrelay_sender_sent_bytes_total",
    "counter",
    "WAL bytes sent on the connection.",
    status.senders.map((s) => [who(s), s.bytes_sent]),
  );
  m.family(
    "walrelay_sender_behind_bytes",
    "gauge",
    "Durable WAL not yet sent to the client.",
    status.senders.map((s) => [who(s), s.catchup.bytes_behind]),
  );
  m.family(
    "walrelay_sender_send_rate_bytes_per_second",
    "gauge",
    "Send rate to the client over the last seconds.",
    status.senders.map((s) => [who(s), s.catchup.rate_bytes_per_second]),
  );

  // Slots.
  m.family(
    "walrelay_slot_active",
    "gauge",
    "Whether a session uses the replication slot.",
    status.slots.map((s) => [{ slot_name: s.slot_name }, s.active ? 1 : 0]),
  );
  m.family(
    "walrelay_slot_restart_lsn_bytes",
    "gauge",
    "Restart LSN of the replication slot, as a byte position.",
    status.slots.flatMap((s): [Labels, Value][] => {
      const v = lsnBytes(s.restart_lsn);
      return v === undefined ? [] : [[{ slot_name: s.slot_name }, v]];
    }),
  );
  m.family(
    "walrelay_slot_retained_bytes",
    "gauge",
    "WAL the replication slot holds back.",
    status.slots.flatMap((s): [Labels, Value][] =>
      s.retained_bytes === null ? [] : [[{ slot_name: s.slot_name }, s.retained_bytes]]
    ),
  );

  if (walFileRequests) {
    m.family(
      "walrelay_http_wal_requests_total",
      "counter",
      "Requests for /wal/ files (restore_command), by outcome.",
      WAL_FILE_OUTCOMES.map((o) => [{ outcome: o }, walFileRequests.get(o) ?? 0]),
    );
  }

  // Upstream, in relay mode.
  const u = status.upstream;
  if (u) {
    m.family(
      "walrelay_store_writable",
      "gauge",
      "Whether WAL from upstream can be written into the directory (0 after a failed write or " +
        "fdatasync, until WAL past it is durable).",
      [[{}, status.store.write_error === null ? 1 : 0]],
    );
    m.family("walrelay_upstream_connected", "gauge", "Whether the upstream link is up.", [[
      {},
      u.connected ? 1 : 0,
    ]]);
    const received = lsnBytes(u.received_lsn);
    if (received !== undefined) {
      m.family(
        "walrelay_upstream_received_lsn_bytes",
        "gauge",
        "End of WAL received from upstream, as a byte position.",
        [[{}, received]],
      );
    }
    const flushed = lsnBytes(u.flushed_lsn);
    if (flushed !== undefined) {
      m.family(
        "walrelay_upstream_flushed_lsn_bytes",
        "gauge",
        "End of WAL from upstream written durably, as a byte position.",
        [[{}, flushed]],
      );
    }
    if (u.lag_seconds !== null) {
      m.family("walrelay_upstream_lag_seconds", "gauge", "How far behind upstream the relay is.", [
        [{}, u.lag_seconds],
      ]);
    }
    // As pg_stat_wal's wal_write, wal_write_time, wal_sync and wal_sync_time.
    for (
      const [name, help, value] of [
        ["writes", "Write calls putting WAL from upstream into segment files.", u.wal_writes],
        ["write_seconds", "Seconds spent in those writes.", u.wal_write_seconds],
        [
          "syncs",
          "fdatasync calls making WAL from upstream durable before it is sent.",
          u.wal_syncs,
        ],
        [
          "sync_seconds",
          "Seconds spent waiting for those syncs: the disk's share of the lag the relay adds.",
          u.wal_sync_seconds,
        ],
      ] as const
    ) {
      m.family(`walrelay_upstream_wal_${name}_total`, "counter", help, [[{}, value]]);
    }
  }
  return m.toString() + (status.base_backups ? baseBackupMetrics(status.base_backups) : "");
}
