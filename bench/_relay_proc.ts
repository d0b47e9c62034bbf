/**
 * A walrelay for the benchmarks with settings the CLI does not offer: directory watching off and
 * the rescan period chosen. Takes the CLI's command line shape, so the test harness's
 * `startRelay({ cli: "bench/_relay_proc.ts", args })` can start it:
 *
 * ```
 * deno run -A bench/_relay_proc.ts serve --wal-dir DIR --listen HOST:PORT
 *          [--no-watch] [--rescan-ms N] [--max-senders N] [--max-connections N]
 * ```
 *
 * SIGTERM/SIGINT shut it down gracefully, as the CLI does.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { WalRelay } from "../lib/server.ts";
import { createLogger } from "../lib/log.ts";

/** Parses the command line, starts the relay, and runs it until a signal shuts it down. */
async function main(args: string[]): Promise<void> {
  const [command, ...rest] = args;
  if (command !== "serve") {
    console.error("usage: _relay_proc.ts serve --wal-dir DIR --listen HOST:PORT [--no-watch] ...");
    Deno.exit(2);
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      "wal-dir": { type: "string" },
      listen: { type: "string", default: "127.0.0.1:5433" },
      "no-watch": { type: "boolean", default: false },
      "rescan-ms": { type: "string", default: "1000" },
      "max-senders": { type: "string", default: "10" },
      "max-connections": { type: "string" },
      "log-format": { type: "string", default: "text" },
    },
    strict: true,
  });
  const walDir = values["wal-dir"];
  const listen = /^(.*):(\d+)$/.exec(values.listen);
  if (!walDir || !listen) {
    console.error("_relay_proc.ts: --wal-dir DIR and --listen HOST:PORT are required");
    Deno.exit(2);
  }
  const maxSenders = Number(values["max-senders"]);
  const relay = await WalRelay.start({
    walDir,
    hostname: listen[1] || "127.0.0.1",
    port: Number(listen[2]),
    maxSenders,
    maxConnections: values["max-connections"] === undefined
      ? maxSenders + 10
      : Number(values["max-connections"]),
    watch: !values["no-watch"],
    rescanMs: Number(values["rescan-ms"]),
    logger: createLogger({ format: values["log-format"] === "json" ? "json" : "text" }),
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) Deno.exit(1);
    stopping = true;
    relay.shutdown({ graceMs: 5000 }).then(() => Deno.exit(0));
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  await relay.finished;
}

if (import.meta.main) await main(Deno.args);
