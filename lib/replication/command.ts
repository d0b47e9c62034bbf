/**
 * The replication command parser: PostgreSQL 15's `repl_gram.y` and `repl_scanner.l` rebuilt.
 *
 * Only the first token decides whether a query is a replication command; anything else is SQL,
 * which the caller refuses on a physical connection.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import type { Lsn } from "../wal/lsn.ts";
import type { TimelineId } from "../wal/segment.ts";
import { type Keyword, Lexer, syntaxError, type Token } from "./_lexer.ts";

/**
 * An option of a parenthesised option list (`generic_option`): a name, and a value that is a
 * string (identifier or quoted string), a number (unsigned integer), or absent.
 */
export interface GenericOption {
  /** The option name, down-cased unless it was quoted. */
  name: string;
  /** The value, if any. */
  value: string | number | undefined;
}

/** `IDENTIFY_SYSTEM`. */
export interface IdentifySystemCommand {
  /** Discriminant. */
  kind: "IDENTIFY_SYSTEM";
}

/** `SHOW name`. */
export interface ShowCommand {
  /** Discriminant. */
  kind: "SHOW";
  /** The setting, dotted parts joined with `.`, each down-cased unless quoted. */
  name: string;
}

/** `TIMELINE_HISTORY tli`. */
export interface TimelineHistoryCommand {
  /** Discriminant. */
  kind: "TIMELINE_HISTORY";
  /** The timeline whose history file is wanted, never 0. */
  timeline: TimelineId;
}

/** `READ_REPLICATION_SLOT name`. */
export interface ReadReplicationSlotCommand {
  /** Discriminant. */
  kind: "READ_REPLICATION_SLOT";
  /** The slot name, not validated: an unknown or invalid name simply reads as no slot. */
  slot: string;
}

/** `CREATE_REPLICATION_SLOT name [TEMPORARY] PHYSICAL [options]`. */
export interface CreatePhysicalSlotCommand {
  /** Discriminant. */
  kind: "CREATE_REPLICATION_SLOT";
  /** Physical slot. */
  physical: true;
  /** The slot name, not yet validated (see {@linkcode validateSlotName}). */
  slot: string;
  /** Whether the slot goes away at the end of the session. */
  temporary: boolean;
  /** Whether WAL is reserved from creation (`RESERVE_WAL`). */
  reserveWal: boolean;
  /** The options as given, legacy keywords included. */
  options: GenericOption[];
}

/** `CREATE_REPLICATION_SLOT name [TEMPORARY] LOGICAL plugin [options]`, recognised to refuse it. */
export interface CreateLogicalSlotCommand {
  /** Discriminant. */
  kind: "CREATE_REPLICATION_SLOT";
  /** Logical slot. */
  physical: false;
  /** The slot name. */
  slot: string;
  /** Whether the slot goes away at the end of the session. */
  temporary: boolean;
  /** The output plugin. */
  plugin: string;
  /** The options as given; not interpreted. */
  options: GenericOption[];
}

/** `DROP_REPLICATION_SLOT name [WAIT]`. */
export interface DropReplicationSlotCommand {
  /** Discriminant. */
  kind: "DROP_REPLICATION_SLOT";
  /** The slot name. */
  slot: string;
  /** Whether to wait for an active slot to be released instead of failing. */
  wait: boolean;
}

/** `START_REPLICATION [SLOT name] [PHYSICAL] lsn [TIMELINE tli]`. */
export interface StartPhysicalReplicationCommand {
  /** Discriminant. */
  kind: "START_REPLICATION";
  /** Physical replication. */
  physical: true;
  /** The slot, when one was named. */
  slot?: string;
  /** Where to start streaming. */
  lsn: Lsn;
  /** The timeline to stream, when given (never 0); otherwise the current one. */
  timeline?: TimelineId;
}

/** `START_REPLICATION SLOT name LOGICAL lsn [(options)]`, recognised to refuse it. */
export interface StartLogicalReplicationCommand {
  /** Discriminant. */
  kind: "START_REPLICATION";
  /** Logical replication. */
  physical: false;
  /** The slot name. */
  slot: string;
  /** Where to start decoding. */
  lsn: Lsn;
  /** Plugin options; values are strings or absent. */
  options: GenericOption[];
}

/** `BASE_BACKUP [(options)]`. */
export interface BaseBackupCommand {
  /** Discriminant. */
  kind: "BASE_BACKUP";
  /** The options as given, checked when the command runs (as `parse_basebackup_options`). */
  options: GenericOption[];
}

/** Anything whose first token is not a replication command keyword. */
export interface SqlCommand {
  /** Discriminant. */
  kind: "SQL";
  /** The query text, as received. */
  text: string;
}

/** A parsed query on a replication connection. */
export type ReplicationCommand =
  | IdentifySystemCommand
  | ShowCommand
  | TimelineHistoryCommand
  | ReadReplicationSlotCommand
  | CreatePhysicalSlotCommand
  | CreateLogicalSlotCommand
  | DropReplicationSlotCommand
  | StartPhysicalReplicationCommand
  | StartLogicalReplicationCommand
  | BaseBackupCommand
  | SqlCommand;

/** The keywords that start a replication command (`replication_scanner_is_replication_command`). */
const COMMAND_KEYWORDS: ReadonlySet<Keyword> = new Set<Keyword>([
  "IDENTIFY_SYSTEM",
  "BASE_BACKUP",
  "START_REPLICATION",
  "CREATE_REPLICATION_SLOT",
  "DROP_REPLICATION_SLOT",
  "READ_REPLICATION_SLOT",
  "TIMELINE_HISTORY",
  "SHOW",
]);

/** Keywords allowed as option names (`ident_or_keyword`): all but READ_REPLICATION_SLOT. */
function optionName(t: Token): string | undefined {
  if (t.type === "ident") return t.value;
  if (t.type === "keyword" && t.keyword !== "READ_REPLICATION_SLOT") {
    return t.keyword.toLowerCase();
  }
  return undefined;
}

/**
 * Parses a query received on a replication connection as PostgreSQL 15's walsender does.
 *
 * Keywords count only in upper case, and only the first token decides: a query that does not
 * start with a replication command keyword (`identify_system` included) is returned as
 * `{ kind: "SQL" }` for the caller to refuse. Syntax errors, and the option errors PostgreSQL
 * raises before executing `CREATE_REPLICATION_SLOT`, are thrown as {@linkcode PgError} with
 * PostgreSQL's SQLSTATE and wording. Slot names are not validated here; see
 * {@linkcode validateSlotName}.
 *
 * @param text The query string of a simple Query message.
 * @returns The command.
 * @throws {PgError} 42601 on a syntax error, `invalid timeline 0`, or a bad option.
 *
 * @example
 * ```ts
 * import { parseCommand } from "./command.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseCommand('START_REPLICATION SLOT "rslot" 0/1000000 TIMELINE 1'), {
 *   kind: "START_REPLICATION",
 *   physical: true,
 *   slot: "rslot",
 *   lsn: 0x1000000n,
 *   timeline: 1,
 * });
 * assert.deepEqual(parseCommand("identify_system"), { kind: "SQL", text: "identify_system" });
 * assert.throws(() => parseCommand("TIMELINE_HISTORY 0"), { code: "42601", message: "invalid timeline 0" });
 * ```
 */
export function parseCommand(text: string): ReplicationCommand {
  const lex = new Lexer(text);
  const first = lex.peek();
  if (first.type !== "keyword" || !COMMAND_KEYWORDS.has(first.keyword)) {
    // PostgreSQL 17's first step of pg_basebackup --incremental. It is no keyword of 15's
    // scanner, so it is recognised here, by its literal upper-case word, to be refused clearly.
    if (/^[ \t\r\n\f]*UPLOAD_MANIFEST[ \t\r\n\f]*;?[ \t\r\n\f]*$/.test(text)) {
      throw new PgError(
        SqlState.FEATURE_NOT_SUPPORTED,
        "incremental backups are not supported by walrelay",
        { hint: "Take a full backup: walrelay serves the full backups it stores." },
      );
    }
    return { kind: "SQL", text };
  }
  const parser = new Parser(lex);
  const cmd = parser.command();
  let end = lex.next();
  if (end.type === "char" && end.char === ";") end = lex.next();
  if (end.type !== "eof") throw syntaxError();
  // PostgreSQL would have accepted the LSN, mangled; we refuse it, but only once the command is
  // otherwise sound, so that a syntax error is still reported as one.
  if (parser.lsnOverflow) throw syntaxError("invalid streaming start location");
  return cmd;
}

/** A recursive-descent rendering of `repl_gram.y`'s physical and logical command rules. */
class Parser {
  #lex: Lexer;
  /** Whether an LSN had a half wider than 32 bits. */
  lsnOverflow = false;

  constructor(lex: Lexer) {
    this.#lex = lex;
  }

  command(): ReplicationCommand {
    const t = this.#lex.next();
    if (t.type !== "keyword") throw syntaxError();
    switch (t.keyword) {
      case "IDENTIFY_SYSTEM":
        return { kind: "IDENTIFY_SYSTEM" };
      case "SHOW":
        return { kind: "SHOW", name: this.#varName() };
      case "READ_REPLICATION_SLOT":
        return { kind: "READ_REPLICATION_SLOT", slot: this.#varName() };
      case "TIMELINE_HISTORY":
        return { kind: "TIMELINE_HISTORY", timeline: this.#timeline() };
      case "BASE_BACKUP":
        return {
          kind: "BASE_BACKUP",
          options: this.#acceptChar("(") ? this.#genericOptions() : [],
        };
      case "CREATE_REPLICATION_SLOT":
        return this.#createSlot();
      case "DROP_REPLICATION_SLOT": {
        const slot = this.#ident();
        return { kind: "DROP_REPLICATION_SLOT", slot, wait: this.#acceptKeyword("WAIT") };
      }
      case "START_REPLICATION":
        return this.#startReplication();
      default:
        throw syntaxError();
    }
  }

  #createSlot(): CreatePhysicalSlotCommand | CreateLogicalSlotCommand {
    const slot = this.#ident();
    const temporary = this.#acceptKeyword("TEMPORARY");
    const t = this.#lex.next();
    if (t.type === "keyword" && t.keyword === "PHYSICAL") {
      const options = this.#createSlotOptions();
      return {
        kind: "CREATE_REPLICATION_SLOT",
        physical: true,
        slot,
        temporary,
        reserveWal: physicalSlotReserveWal(options),
        options,
      };
    }
    if (t.type === "keyword" && t.keyword === "LOGICAL") {
      const plugin = this.#ident();
      const options = this.#createSlotOptions();
      return { kind: "CREATE_REPLICATION_SLOT", physical: false, slot, temporary, plugin, options };
    }
    throw syntaxError();
  }

  /** `create_slot_options`: a parenthesised list, or the pre-15 bare keywords. */
  #createSlotOptions(): GenericOption[] {
    if (this.#acceptChar("(")) return this.#genericOptions();
    const options: GenericOption[] = [];
    for (;;) {
      const t = this.#lex.peek();
      if (t.type !== "keyword") return options;
      const legacy = LEGACY_SLOT_OPTIONS[t.keyword];
      if (!legacy) return options;
      this.#lex.next();
      options.push({ ...legacy });
    }
  }

  #startReplication(): StartPhysicalReplicationCommand | StartLogicalReplicationCommand {
    let slot: string | undefined;
    if (this.#acceptKeyword("SLOT")) {
      slot = this.#ident();
      if (this.#acceptKeyword("LOGICAL")) {
        const lsn = this.#recptr();
        const options = this.#acceptChar("(") ? this.#pluginOptions() : [];
        return { kind: "START_REPLICATION", physical: false, slot, lsn, options };
      }
    }
    this.#acceptKeyword("PHYSICAL");
    const cmd: StartPhysicalReplicationCommand = {
      kind: "START_REPLICATION",
      physical: true,
      lsn: this.#recptr(),
    };
    if (slot !== undefined) cmd.slot = slot;
    if (this.#acceptKeyword("TIMELINE")) cmd.timeline = this.#timeline();
    return cmd;
  }

  /** `generic_option_list ')'`, the opening parenthesis already taken. */
  #genericOptions(): GenericOption[] {
    const options: GenericOption[] = [];
    do {
      const name = optionName(this.#lex.next());
      if (name === undefined) throw syntaxError();
      const v = this.#lex.peek();
      let value: string | number | undefined;
      if (v.type === "ident" || v.type === "sconst" || v.type === "uconst") {
        this.#lex.next();
        value = v.value;
      }
      options.push({ name, value });
    } while (this.#acceptChar(","));
    this.#expectChar(")");
    return options;
  }

  /** `plugin_opt_list ')'`: plain identifiers, optional string values. */
  #pluginOptions(): GenericOption[] {
    const options: GenericOption[] = [];
    do {
      const name = this.#ident();
      const v = this.#lex.peek();
      let value: string | undefined;
      if (v.type === "sconst") {
        this.#lex.next();
        value = v.value;
      }
      options.push({ name, value });
    } while (this.#acceptChar(","));
    this.#expectChar(")");
    return options;
  }

  /** `var_name`: identifiers joined by dots. */
  #varName(): string {
    let name = this.#ident();
    while (this.#acceptChar(".")) name += "." + this.#ident();
    return name;
  }

  /**
   * A timeline number. PostgreSQL checks it as soon as it is read, so `invalid timeline 0` wins
   * over any syntax error further along.
   */
  #timeline(): TimelineId {
    const t = this.#lex.next();
    if (t.type !== "uconst") throw syntaxError();
    if (t.value === 0) throw syntaxError("invalid timeline 0");
    return t.value;
  }

  #ident(): string {
    const t = this.#lex.next();
    if (t.type !== "ident") throw syntaxError();
    return t.value;
  }

  #recptr(): Lsn {
    const t = this.#lex.next();
    if (t.type !== "recptr") throw syntaxError();
    if (t.lsn === undefined) {
      this.lsnOverflow = true;
      return 0n;
    }
    return t.lsn;
  }

  #acceptKeyword(k: Keyword): boolean {
    const t = this.#lex.peek();
    if (t.type !== "keyword" || t.keyword !== k) return false;
    this.#lex.next();
    return true;
  }

  #acceptChar(c: string): boolean {
    const t = this.#lex.peek();
    if (t.type !== "char" || t.char !== c) return false;
    this.#lex.next();
    return true;
  }

  #expectChar(c: string): void {
    if (!this.#acceptChar(c)) throw syntaxError();
  }
}

/** The pre-15 bare options of CREATE_REPLICATION_SLOT, as the grammar turns them into options. */
const LEGACY_SLOT_OPTIONS: Partial<Record<Keyword, GenericOption>> = {
  EXPORT_SNAPSHOT: { name: "snapshot", value: "export" },
  NOEXPORT_SNAPSHOT: { name: "snapshot", value: "nothing" },
  USE_SNAPSHOT: { name: "snapshot", value: "use" },
  RESERVE_WAL: { name: "reserve_wal", value: "true" },
  TWO_PHASE: { name: "two_phase", value: "true" },
};

/**
 * `parseCreateReplSlotOptions` for a physical slot: only `reserve_wal`, once; the logical-only
 * options count as conflicting, as in PostgreSQL.
 */
function physicalSlotReserveWal(options: GenericOption[]): boolean {
  let reserveWal: boolean | undefined;
  for (const o of options) {
    if (o.name === "snapshot" || o.name === "two_phase" || o.name === "reserve_wal") {
      if (o.name !== "reserve_wal" || reserveWal !== undefined) {
        throw syntaxError("conflicting or redundant options");
      }
      reserveWal = booleanOption(o);
    } else {
      throw new PgError(SqlState.INTERNAL_ERROR, `unrecognized option: ${o.name}`);
    }
  }
  return reserveWal ?? false;
}

/**
 * `defGetBoolean`: no value is true; integers 0 and 1; the strings true/false/on/off. Anything
 * else is a syntax error naming the option.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { booleanOption } from "./command.ts";
 * assert.equal(booleanOption({ name: "wal", value: undefined }), true);
 * assert.equal(booleanOption({ name: "wal", value: "off" }), false);
 * assert.throws(() => booleanOption({ name: "wal", value: 2 }));
 * ```
 */
export function booleanOption(o: GenericOption): boolean {
  if (o.value === undefined) return true;
  if (typeof o.value === "number") {
    if (o.value === 0) return false;
    if (o.value === 1) return true;
  } else {
    const v = o.value.toLowerCase();
    if (v === "true" || v === "on") return true;
    if (v === "false" || v === "off") return false;
  }
  throw syntaxError(`${o.name} requires a Boolean value`);
}

/** `NAMEDATALEN`: slot names must be shorter, in bytes. */
const NAMEDATALEN = 64;

/**
 * Checks a replication slot name as PostgreSQL's `ReplicationSlotValidateName` does: 1 to 63
 * bytes of `[a-z0-9_]`, so that it is a safe directory name everywhere.
 *
 * @param name The slot name.
 * @throws {PgError} 42602 when the name is empty or has other characters, 42622 when too long.
 *
 * @example
 * ```ts
 * import { validateSlotName } from "./command.ts";
 * import assert from "node:assert/strict";
 * validateSlotName("pg_basebackup_13214");
 * assert.throws(() => validateSlotName("Abc"), {
 *   code: "42602",
 *   message: 'replication slot name "Abc" contains invalid character',
 * });
 * ```
 */
export function validateSlotName(name: string): void {
  if (name.length === 0) {
    throw new PgError(SqlState.INVALID_NAME, `replication slot name "${name}" is too short`);
  }
  if (new TextEncoder().encode(name).length >= NAMEDATALEN) {
    throw new PgError(SqlState.NAME_TOO_LONG, `replication slot name "${name}" is too long`);
  }
  if (!/^[a-z0-9_]+$/.test(name)) {
    throw new PgError(
      SqlState.INVALID_NAME,
      `replication slot name "${name}" contains invalid character`,
      {
        hint:
          "Replication slot names may only contain lower case letters, numbers, and the underscore character.",
      },
    );
  }
}
