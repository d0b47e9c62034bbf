/**
 * The `walrelay` command line: `serve`, `inspect`, `status`, `passwd`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { createLogger } from "./lib/log.ts";
import { WalRelay } from "./lib/server.ts";
import { WALRELAY_VERSION } from "./lib/replication/settings.ts";

const USAGE = `walrelay ${WALRELAY_VERSION}: a PostgreSQL WAL sender

Usage:
  walrelay serve   --wal-dir DIR [--listen HOST:PORT] [--max-senders N] [--log-format text|json]
  walrelay inspect DIR|FILE
  walrelay status  [URL]
  walrelay passwd  USER

serve options:
  --wal-dir DIR         directory of WAL segment files to serve (required)
  --listen HOST:PORT    where to accept replication connections (default 127.0.0.1:5433)
  --max-senders N       most replication connections at once, as max_wal_senders (default 10)
  --log-format FORMAT   text (default) or json
  --sender-timeout SEC  drop a streaming client silent this long, as wal_sender_timeout (default 60)
`;

/** Exit with a message, as a CLI user expects. */
function fail(message: string, code = 2): never {
  console.error(`walrelay: ${message}`);
  Deno.exit(code);
}

function parseListen(text: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  if (!m) fail(`invalid --listen "${text}": expected HOST:PORT`);
  const port = Number(m[3]);
  if (port < 0 || port > 65535) fail(`invalid port in --listen "${text}"`);
  return { hostname: m[1] ?? (m[2] || "127.0.0.1"), port };
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      "wal-dir": { type: "string" },
      listen: { type: "string", default: "127.0.0.1:5433" },
      "max-senders": { type: "string", default: "10" },
      "log-format": { type: "string", default: "text" },
      "sender-timeout": { type: "string", default: "60" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const walDir = values["wal-dir"];
  if (!walDir) fail("--wal-dir is required\n\n" + USAGE);
  const maxSenders = Number(values["max-senders"]);
  if (!Number.isInteger(maxSenders) || maxSenders < 1) {
    fail(`invalid --max-senders "${values["max-senders"]}"`);
  }
  const senderTimeout = Number(values["sender-timeout"]);
  if (!(senderTimeout >= 0)) fail(`invalid --sender-timeout "${values["sender-timeout"]}"`);
  const format = values["log-format"];
  if (format !== "text" && format !== "json") fail(`invalid --log-format "${format}"`);
  const logger = createLogger({ format });
  const { hostname, port } = parseListen(values.listen);

  let relay: WalRelay;
  try {
    relay = await WalRelay.start({
      walDir,
      hostname,
      port,
      maxSenders,
      logger,
      timeouts: { sender: senderTimeout * 1000 },
    });
  } catch (e) {
    fail((e as Error).message, 1);
  }

  let stopping = false;
  const onStop = (signal: Deno.Signal) => () => {
    if (stopping) {
      logger.log("info", `received ${signal} again: exiting immediately`);
      relay.close();
      Deno.exit(1);
    }
    stopping = true;
    logger.log("info", `received ${signal}: shutting down after sending all WAL`);
    relay.shutdown().then(() => {
      logger.log("info", "shut down");
      Deno.exit(0);
    });
  };
  Deno.addSignalListener("SIGTERM", onStop("SIGTERM"));
  Deno.addSignalListener("SIGINT", onStop("SIGINT"));
  Deno.addSignalListener("SIGHUP", () => {
    logger.log("info", "received SIGHUP, reloading configuration files");
    relay.refresh().catch((e) => logger.log("warn", `reload failed: ${(e as Error).message}`));
  });
  await relay.finished;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return await serve(rest);
    case "--version":
    case "version":
      console.log(`walrelay ${WALRELAY_VERSION}`);
      return;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      console.log(USAGE);
      return;
    default:
      fail(`unknown command "${command}"\n\n${USAGE}`);
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (e) {
    fail((e as Error).message, 2);
  }
}
