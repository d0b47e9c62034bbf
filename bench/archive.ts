/**
 * Archive benchmark: the relay serving the same WAL from a plain, a gzip, an lz4 and a zstd
 * archive, against the codecs' own command-line decoders on the same files.
 *
 * 1. A primary (16 MB segments, everything kept) writes `--archive-size-mb` of WAL with repeated
 *    `pgbench -i` (table loads and index builds: WAL that compresses as real WAL does, unlike
 *    repeated logical messages), then switches segment and checkpoints.
 * 2. The complete segments are written into four directories as pg_receivewal `--compress` lays
 *    them out: plain, `SEG.gz` (`gzip -6`), `SEG.lz4` (`lz4 -BD -B4 --no-frame-crc`, pg_receivewal's
 *    frame settings), `SEG.zst` (`zstd -3`).
 * 3. `zcat`, `lz4 -dc`, `zstd -dc` decode each archive to /dev/null: MB/s of plain WAL and CPU.
 * 4. After one warm-up pull of the plain archive, for each archive, a fresh relay (cold cache): one
 *    `pg_receivewal --no-sync` pulls all of it (MB/s delivered, relay CPU, and the cores the relay
 *    and the client kept busy), which has the relay validate every segment as it serves it; a
 *    second pull from the same relay, whose segments are known valid but no longer cached (1 GiB
 *    against the cache's 256 MiB), is what serving costs from then on. Then one, and then
 *    `--archive-clients` at once, pull the first `--archive-fanout-mb` of it (from a directory of
 *    those segments and the next only), each from a fresh relay, three times alternating; the
 *    figures are medians. The decompression CPU of a run is the seconds the relay's threads spent
 *    reading and decoding files (`walrelay_archive_decode_seconds_total`); the cache should keep it
 *    the same for many clients as for one. Its CPU beyond what the plain archive cost for the same
 *    clients is shown too: it says the same, but as the difference of two larger, noisier figures.
 *
 * Run it through `deno task bench --suite archive`.
 *
 * @module
 */

import { join } from "node:path";
import { compareDirs, type PgCluster, run, tempDir, waitFor } from "../tests/_pg.ts";
import { procCpu } from "./_proc.ts";
import {
  receivewalCommand,
  seedReceiveDir,
  SEG_SIZE,
  startDenoRelay,
  startWalPrimary,
} from "./_setup.ts";
import { fixed, MIB, parseLsn, segmentName, table } from "./_util.ts";
import { median } from "./_stats.ts";

/** Options of {@linkcode runArchive}. */
export interface ArchiveBenchOptions {
  /** WAL to generate, in MiB. */
  sizeMb: number;
  /** Clients of the fan-out. */
  clients: number;
  /** WAL each fan-out client pulls, in MiB (the first segments of the archive). */
  fanoutMb: number;
  /** The walrelay entry point. */
  relayCli: string;
  /** More arguments for the relays (the bench's `--workers`). */
  relayArgs?: string[];
  /** Where progress lines and tables go. */
  log: (line: string) => void;
  /** Throws when the run was interrupted. */
  checkInterrupted: () => void;
}

/** The archive formats compared. */
export const ARCHIVE_FORMATS = ["plain", "gzip", "lz4", "zstd"] as const;
/** One of {@linkcode ARCHIVE_FORMATS}. */
export type ArchiveBenchFormat = typeof ARCHIVE_FORMATS[number];

const EXT: Record<ArchiveBenchFormat, string> = {
  plain: "",
  gzip: ".gz",
  lz4: ".lz4",
  zstd: ".zst",
};
const COMPRESS: Record<Exclude<ArchiveBenchFormat, "plain">, string[]> = {
  gzip: ["gzip", "-6", "-c"],
  lz4: ["lz4", "-q", "-c", "-BD", "-B4", "--no-frame-crc"],
  zstd: ["zstd", "-q", "-3", "-c"],
};
const DECOMPRESS: Record<Exclude<ArchiveBenchFormat, "plain">, string[]> = {
  gzip: ["zcat"],
  lz4: ["lz4", "-q", "-dc", "-m"],
  zstd: ["zstd", "-q", "-dc"],
};

/** A timed run: wall seconds, MB/s of plain WAL, CPU seconds of the process measured. */
export interface TimedRun {
  wall_s: number;
  mb_per_s: number;
  cpu_s: number;
  /** Archived files the relay decoded (its `/metrics`), when it was the relay measured. */
  decodes?: number;
  /** Seconds its threads spent reading and decoding them (its `/metrics`). */
  decode_s?: number;
  /** CPU seconds of the clients (`pg_receivewal`), when it was the relay measured. */
  client_cpu_s?: number;
}

/** Rounds of one client, then the fan-out, over the fan-out's range. */
const FANOUT_ROUNDS = 3;

/** Each figure's median over `runs`; an optional one only where every run has it. */
function medianRun(runs: readonly TimedRun[]): TimedRun {
  const out: TimedRun = {
    wall_s: median(runs.map((r) => r.wall_s)),
    mb_per_s: median(runs.map((r) => r.mb_per_s)),
    cpu_s: median(runs.map((r) => r.cpu_s)),
  };
  for (const k of ["decodes", "decode_s", "client_cpu_s"] as const) {
    const values = runs.map((r) => r[k]).filter((v): v is number => v !== undefined);
    if (values.length === runs.length) out[k] = median(values);
  }
  return out;
}

/**
 * Cores the relay and its clients kept busy together: their CPU over the wall time. Near the
 * machine's count, the run was bound by CPU, not by waiting.
 */
function coresBusy(r: TimedRun): number {
  return (r.cpu_s + (r.client_cpu_s ?? NaN)) / r.wall_s;
}

/** Figures of one archive format. */
export interface ArchiveFormatReport {
  /** Bytes on disk. */
  archive_bytes: number;
  /** Plain bytes / archive bytes. */
  ratio: number;
  /** The codec's CLI decoding every file to /dev/null (its CPU). */
  cli: TimedRun | null;
  /** One pg_receivewal pulling all of it from a fresh relay, which validates it (relay CPU). */
  one_client: TimedRun;
  /** The same again from that relay: validated, decoded anew (1 GiB beyond its cache). */
  one_client_validated: TimedRun;
  /** One pg_receivewal pulling the fan-out range (relay CPU). */
  one_client_range: TimedRun;
  /** `clients` pulling the fan-out range at once (MB/s summed over the clients; relay CPU). */
  fanout: TimedRun;
}

/** What {@linkcode runArchive} measured. */
export interface ArchiveBenchReport {
  config: { size_mb: number; clients: number; fanout_mb: number; relay_cli: string };
  wal: { segments: number; first: string; last: string; bytes: number; generate_s: number };
  relay_command: string;
  client_command: string;
  formats: Record<ArchiveBenchFormat, ArchiveFormatReport>;
  /** Decoding seconds (the relay's `/metrics`) of the fan-out / of one client. */
  decompression_cpu_ratio: Partial<Record<ArchiveBenchFormat, number>>;
  /** The same from relay CPU beyond the plain archive's, fan-out / one client. */
  cpu_beyond_plain_ratio: Partial<Record<ArchiveBenchFormat, number>>;
  verification: string;
}

/** Writes at least `sizeMb` of WAL with repeated `pgbench -i`; returns the complete segments. */
async function generate(
  pg: PgCluster,
  sizeMb: number,
): Promise<{ names: string[]; firstSeg: bigint; s: number }> {
  const t0 = performance.now();
  const start = parseLsn(await pg.currentLsn());
  const target = start + BigInt(sizeMb) * BigInt(MIB);
  while (parseLsn(await pg.currentLsn()) < target) {
    const left = Number(target - parseLsn(await pg.currentLsn())) / MIB;
    // About 17 MB of WAL per unit of scale.
    await pg.pgbench(["-i", "-q", "-s", String(Math.max(1, Math.min(20, Math.ceil(left / 17))))]);
  }
  await pg.sql("SELECT pg_switch_wal()");
  await pg.sql("CHECKPOINT");
  const end = parseLsn(await pg.currentLsn()) / BigInt(SEG_SIZE);
  const first = start / BigInt(SEG_SIZE);
  const names: string[] = [];
  for (let s = first; s < end; s++) names.push(segmentName(1, s, SEG_SIZE));
  return { names, firstSeg: first, s: (performance.now() - t0) / 1000 };
}

/** Runs `cmd` with stdin from `input` and stdout into `output` (a path) or /dev/null. */
async function pipeFile(cmd: string[], input: string, output: string | null): Promise<void> {
  const out = output === null ? "null" : "piped";
  using inFile = await Deno.open(input);
  const child = new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdin: "piped",
    stdout: out,
    stderr: "inherit",
  }).spawn();
  const writing = output === null
    ? Promise.resolve()
    : Deno.open(output, { write: true, create: true, truncate: true }).then((f) =>
      child.stdout.pipeTo(f.writable)
    );
  await inFile.readable.pipeTo(child.stdin);
  const [status] = await Promise.all([child.status, writing]);
  if (!status.success) throw new Error(`${cmd.join(" ")} < ${input} failed`);
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) n += (await Deno.stat(join(dir, e.name))).size;
  }
  return n;
}

/**
 * Runs the archive benchmark. Returns the figures; the summary lines go to `log`.
 */
export async function runArchive(opts: ArchiveBenchOptions): Promise<ArchiveBenchReport> {
  const { log } = opts;
  log(`\n== archive: plain, gzip, lz4 and zstd archives of ${opts.sizeMb} MiB ==`);
  await using work = await tempDir("walrelay-bench-archive-");
  await using pg = await startWalPrimary({
    keepMb: opts.sizeMb * 2 + 512,
    maxWalSenders: 4,
    sharedBuffers: "256MB",
  });
  const { names, firstSeg, s: generateS } = await generate(pg, opts.sizeMb);
  const plainBytes = names.length * SEG_SIZE;
  log(`generated ${names.length} segments (${plainBytes / MIB} MiB) in ${fixed(generateS, 1)} s`);
  opts.checkInterrupted();

  const dirs = {} as Record<ArchiveBenchFormat, string>;
  for (const f of ARCHIVE_FORMATS) {
    dirs[f] = join(work.path, f);
    await Deno.mkdir(dirs[f]);
  }
  for (const name of names) await Deno.copyFile(join(pg.walDir, name), join(dirs.plain, name));
  await pg.stop();
  for (const f of ["gzip", "lz4", "zstd"] as const) {
    const t0 = performance.now();
    // Two at a time: the machine's cores.
    for (let i = 0; i < names.length; i += 2) {
      await Promise.all(
        names.slice(i, i + 2).map((n) =>
          pipeFile(COMPRESS[f], join(dirs.plain, n), join(dirs[f], n + EXT[f]))
        ),
      );
    }
    log(
      `compressed with ${COMPRESS[f].join(" ")} in ${fixed((performance.now() - t0) / 1000, 1)} s`,
    );
    opts.checkInterrupted();
  }

  const endLsn = (count: number): bigint => (firstSeg + BigInt(count)) * BigInt(SEG_SIZE);
  const rangeSegments = Math.min(names.length, Math.max(1, Math.floor(opts.fanoutMb / 16)));
  const formats = {} as Record<ArchiveBenchFormat, ArchiveFormatReport>;
  let relayCommand = "";
  let clientCommand = "";
  let verification = "";

  /**
   * `clients` pg_receivewal pull `segments` segments from a fresh relay on `dir`, `times` times
   * in a row; a run's figures each.
   */
  const pull = async (
    f: ArchiveBenchFormat,
    clients: number,
    segments: number,
    verify: boolean,
    times = 1,
  ): Promise<TimedRun[]> => {
    // The fan-out range is served from a directory that ends one segment after it (which
    // completes its last record): clients stopping at its end read on past it by what the
    // sockets hold (up to 32 MB each with tcp_rmem's maximum here), and a relay serving more
    // would decode segments beyond it for them.
    let walDir = dirs[f];
    if (segments + 1 < names.length) {
      walDir = join(work.path, `${f}-first-${segments}`);
      await Deno.mkdir(walDir, { recursive: true });
      for (const n of names.slice(0, segments + 1)) {
        await Deno.link(join(dirs[f], n + EXT[f]), join(walDir, n + EXT[f])).catch((e) => {
          if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
        });
      }
    }
    await using relay = await startDenoRelay({
      cli: opts.relayCli,
      walDir,
      args: [
        "--max-senders",
        String(clients + 2),
        "--log-level",
        "warn",
        ...(opts.relayArgs ?? []),
      ],
      cpuProfDir: undefined,
      http: true,
    });
    relayCommand ||= relay.command;
    // Decodes say what the CPU figures only suggest: whether clients shared them.
    const decoding = async (): Promise<{ decodes: number; seconds: number }> => {
      const metrics = await (await fetch(new URL("metrics", relay.httpUrl))).text();
      const value = (re: RegExp) => Number(re.exec(metrics)?.[1] ?? NaN);
      return {
        decodes: value(/^walrelay_cache_misses_total\{cache="archive_segments"\} (\d+)$/m),
        seconds: value(/^walrelay_archive_decode_seconds_total (\S+)$/m),
      };
    };
    // With sender threads the replication port opens before the HTTP server does.
    await waitFor(() => decoding().then(() => true, () => false), {
      message: "the relay's HTTP server never answered",
    });
    const runs: TimedRun[] = [];
    for (let time = 0; time < times; time++) {
      const recvDirs: string[] = [];
      const cmds: string[][] = [];
      for (let i = 0; i < clients; i++) {
        const dir = join(work.path, `recv-${f}-${clients}-${i}`);
        await seedReceiveDir(dir, names[0]!);
        recvDirs.push(dir);
        cmds.push(
          await receivewalCommand({ port: relay.port, dir, endLsn: endLsn(segments), sync: false }),
        );
      }
      clientCommand = cmds[0]!.join(" ");
      const decodedBefore = await decoding();
      const before = (await procCpu(relay.pid)).self;
      const clientsBefore = (await procCpu("self")).children;
      const t0 = performance.now();
      const results = await Promise.all(cmds.map((c) => run(c, { timeoutMs: 900_000 })));
      const wall = (performance.now() - t0) / 1000;
      const cpu = (await procCpu(relay.pid)).self - before;
      const clientCpu = (await procCpu("self")).children - clientsBefore;
      for (const r of results) {
        if (!r.success) throw new Error(`pg_receivewal failed:\n${r.stderr}\n${relay.stderr()}`);
      }
      if (verify) {
        const c = await compareDirs(recvDirs[0]!, dirs.plain);
        if (c.differ.length > 0 || c.same.length !== segments) {
          throw new Error(
            `${f}: output differs from the plain archive: ${JSON.stringify(c.differ)}`,
          );
        }
        verification += `${f}: ${c.same.length} segments byte-identical to the primary's; `;
      }
      for (const d of recvDirs) await Deno.remove(d, { recursive: true });
      const decoded = await decoding();
      runs.push({
        wall_s: wall,
        mb_per_s: (clients * segments * SEG_SIZE) / MIB / wall,
        cpu_s: cpu,
        decodes: decoded.decodes - decodedBefore.decodes,
        decode_s: decoded.seconds - decodedBefore.seconds,
        client_cpu_s: clientCpu,
      });
    }
    return runs;
  };

  // A warm-up pull, not counted: the first pull after generating the archives ran at a third of
  // the speed of later ones, its client burning three times the CPU, whichever format came first.
  await pull("plain", 1, names.length, false);
  for (const f of ARCHIVE_FORMATS) {
    opts.checkInterrupted();
    const archiveBytes = await dirBytes(dirs[f]);
    let cli: TimedRun | null = null;
    if (f !== "plain") {
      const before = (await procCpu("self")).children;
      const t0 = performance.now();
      for (const n of names) await pipeFile(DECOMPRESS[f], join(dirs[f], n + EXT[f]), null);
      const wall = (performance.now() - t0) / 1000;
      cli = {
        wall_s: wall,
        mb_per_s: plainBytes / MIB / wall,
        cpu_s: (await procCpu("self")).children - before,
      };
    }
    const [one, validated] = await pull(f, 1, names.length, true, 2) as [TimedRun, TimedRun];
    // The decoding seconds of a few segments move with what else the cores run: alternate one
    // client and the fan-out, each from a fresh relay, and keep medians.
    const oneRanges: TimedRun[] = [];
    const fanouts: TimedRun[] = [];
    for (let round = 0; round < FANOUT_ROUNDS; round++) {
      oneRanges.push(...await pull(f, 1, rangeSegments, false));
      fanouts.push(...await pull(f, opts.clients, rangeSegments, false));
    }
    const oneRange = medianRun(oneRanges);
    const fanout = medianRun(fanouts);
    formats[f] = {
      archive_bytes: archiveBytes,
      ratio: plainBytes / archiveBytes,
      cli,
      one_client: one,
      one_client_validated: validated,
      one_client_range: oneRange,
      fanout,
    };
    log(
      `${f}: ${fixed(archiveBytes / MIB, 0)} MiB on disk; one client ${
        fixed(one.mb_per_s, 0)
      } MB/s ` +
        `(relay CPU ${fixed(one.cpu_s)} s, clients ${fixed(one.client_cpu_s ?? NaN)} s: ` +
        `${fixed(coresBusy(one))} cores busy), validated ${fixed(validated.mb_per_s, 0)} MB/s ` +
        `(${fixed(validated.cpu_s)} s); ${opts.clients} clients ${
          fixed(fanout.mb_per_s, 0)
        } MB/s ` +
        `(relay CPU ${fixed(fanout.cpu_s)} s against ${fixed(oneRange.cpu_s)} s for one; ` +
        `decodes ${fanout.decodes ?? "-"} in ${fixed(fanout.decode_s ?? NaN)} s against ` +
        `${oneRange.decodes ?? "-"} in ${fixed(oneRange.decode_s ?? NaN)} s)` +
        (cli ? `; ${DECOMPRESS[f as "gzip"].join(" ")} ${fixed(cli.mb_per_s, 0)} MB/s` : ""),
    );
  }
  const decompression: Partial<Record<ArchiveBenchFormat, number>> = {};
  const beyondPlain: Partial<Record<ArchiveBenchFormat, number>> = {};
  for (const f of ["gzip", "lz4", "zstd"] as const) {
    const one = formats[f].one_client_range.decode_s ?? NaN;
    decompression[f] = one > 0 ? (formats[f].fanout.decode_s ?? NaN) / one : NaN;
    const oneCpu = formats[f].one_client_range.cpu_s - formats.plain.one_client_range.cpu_s;
    const manyCpu = formats[f].fanout.cpu_s - formats.plain.fanout.cpu_s;
    beyondPlain[f] = oneCpu > 0 ? manyCpu / oneCpu : NaN;
  }
  log("");
  log(table(
    [
      "format",
      "on disk MiB",
      "ratio",
      "CLI MB/s",
      "1 client MB/s",
      "relay CPU s",
      "cores busy",
      "validated MB/s",
      `${opts.clients} clients MB/s`,
      "relay CPU s",
      "decoding ×",
      "CPU beyond plain ×",
      "decodes 1 / N",
    ],
    ARCHIVE_FORMATS.map((f) => {
      const r = formats[f];
      return [
        f,
        fixed(r.archive_bytes / MIB, 0),
        fixed(r.ratio),
        r.cli ? fixed(r.cli.mb_per_s, 0) : "-",
        fixed(r.one_client.mb_per_s, 0),
        fixed(r.one_client.cpu_s),
        fixed(coresBusy(r.one_client)),
        fixed(r.one_client_validated.mb_per_s, 0),
        fixed(r.fanout.mb_per_s, 0),
        fixed(r.fanout.cpu_s),
        f === "plain" ? "-" : fixed(decompression[f]!),
        f === "plain" ? "-" : fixed(beyondPlain[f]!),
        f === "plain" ? "-" : `${r.one_client_range.decodes ?? "-"} / ${r.fanout.decodes ?? "-"}`,
      ];
    }),
  ));
  return {
    config: {
      size_mb: opts.sizeMb,
      clients: opts.clients,
      fanout_mb: rangeSegments * 16,
      relay_cli: opts.relayCli,
    },
    wal: {
      segments: names.length,
      first: names[0]!,
      last: names.at(-1)!,
      bytes: plainBytes,
      generate_s: generateS,
    },
    relay_command: relayCommand,
    client_command: clientCommand,
    formats,
    decompression_cpu_ratio: decompression,
    cpu_beyond_plain_ratio: beyondPlain,
    verification,
  };
}

/** The headline lines of an archive run. */
export function archiveHeadline(r: ArchiveBenchReport): string[] {
  return ARCHIVE_FORMATS.map((f) => {
    const x = r.formats[f];
    return `archive ${f}: one client ${fixed(x.one_client.mb_per_s, 0)} MB/s ` +
      `(${fixed(x.one_client_validated.mb_per_s, 0)} validated), ` +
      `${r.config.clients} clients ${fixed(x.fanout.mb_per_s, 0)} MB/s` +
      (f === "plain" ? "" : `, CLI ${fixed(x.cli!.mb_per_s, 0)} MB/s, decoding seconds ` +
        `${r.config.clients} clients / one ${fixed(r.decompression_cpu_ratio[f]!)} ` +
        `(decodes ${x.fanout.decodes ?? "-"} / ${x.one_client_range.decodes ?? "-"})`);
  });
}
