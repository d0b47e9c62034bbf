/**
 * The validating WAL reader: PostgreSQL 15's xlogreader checks, run over WAL bytes as they arrive,
 * to find the end of valid WAL.
 *
 * Every page header touched is checked (magic, flags, the long header at each segment start,
 * `xlp_pageaddr`, the timeline never going back), every record header (length, resource manager,
 * prev-link), every continuation (`XLP_FIRST_IS_CONTRECORD` and `xlp_rem_len`) and every record's
 * CRC-32C. The valid end is where the last record passing all of them ends, as `EndRecPtr` in
 * xlogreader: MAXALIGNed, or the next segment start after an `XLOG_SWITCH`.
 *
 * @module
 */

import { readFileHead } from "../_io.ts";
import { crc32cUpdate } from "./crc32c.ts";
import { formatLsn, type Lsn } from "./lsn.ts";
import {
  readLongPageHeader,
  SIZE_OF_LONG_PAGE_HEADER,
  SIZE_OF_SHORT_PAGE_HEADER,
  XLP_ALL_FLAGS,
  XLP_FIRST_IS_CONTRECORD,
  XLP_FIRST_IS_OVERWRITE_CONTRECORD,
  XLP_LONG_HEADER,
} from "./page_header.ts";
import {
  isValidRmid,
  isXlogSwitch,
  SIZE_OF_XLOG_RECORD,
  XLOG_RECORD_CRC_OFFSET,
} from "./record_header.ts";
import {
  DEFAULT_BLOCK_SIZE,
  isValidSegmentSize,
  parseWalFileName,
  segmentFileName,
  segmentStart,
} from "./segment.ts";

/** A record that passed every check. */
export interface WalRecordInfo {
  /** Where the record starts (`ReadRecPtr`). */
  lsn: Lsn;
  /** Where the next record may start (`EndRecPtr`): MAXALIGNed, a segment start after a switch. */
  end: Lsn;
  /** `xl_tot_len`. */
  totLen: number;
  /** `xl_rmid`. */
  rmid: number;
  /** `xl_info`. */
  info: number;
  /** `xl_xid`. */
  xid: number;
  /** `xl_prev`. */
  prev: Lsn;
}

/** Why validation stopped. */
export interface WalReaderError {
  /** The LSN the message is about: a record's start, or a page's for page header failures. */
  lsn: Lsn;
  /** The reason in xlogreader's words, e.g. `invalid record length at 0/20001F8: wanted 24, got 0`. */
  message: string;
}

/** What {@linkcode WalValidator} needs to know about the WAL it checks. */
export interface WalValidatorOptions {
  /** `wal_segment_size`; every long page header must agree. */
  segmentSize: number;
  /** `XLOG_BLCKSZ` (default 8192); every long page header must agree. */
  blockSize?: number;
  /** The expected `xlp_magic`, e.g. 0xD110 for PostgreSQL 15. */
  magic: number;
  /**
   * The database system identifier every long page header must carry. When omitted, the first
   * long header seen sets it.
   */
  systemId?: bigint;
  /** Where to begin: a segment start. The first record is found as `pg_waldump` does. */
  start: Lsn;
  /** The timeline of the files, used only to name segments in messages (default 1). */
  timeline?: number;
  /** Called for each record that passed every check, in order. */
  onRecord?: (record: WalRecordInfo) => void;
}

// What the validator expects next in the byte stream.
const PAGE_HEADER = 0;
const RECORD_START = 1;
const RECORD_HEADER = 2;
const RECORD_BODY = 3;

// What a page header introduces.
const FIND_FIRST = 0;
const BETWEEN_RECORDS = 1;
const CONTINUATION = 2;

const TWO_32 = 4294967296;

/**
 * The largest record xlogreader will assemble (`AllocSizeIsValid` of its buffer, which is the
 * length rounded up to a whole page). Beyond it the backend reports the record as too long.
 */
const MAX_ALLOC_SIZE = 0x3FFFFFFF;

function hex4(n: number): string {
  return n.toString(16).toUpperCase().padStart(4, "0");
}

/**
 * Checks WAL incrementally, as xlogreader would read it, and tracks the valid end.
 *
 * Push the bytes of consecutive segment files in pieces of any size; each push must begin at or
 * before {@linkcode WalValidator.resumeLsn} (bytes before it are skipped). Only the current page
 * and record headers and a running CRC are kept, so memory does not grow with record length.
 * A record whose bytes have not all arrived is no error: validation carries on with the next
 * push. After a failure the validator rewinds to the end of the last good record
 * (`resumeLsn == validEnd`, or the segment start before the first record), so bytes that change
 * later — the zero tail of a growing `.partial` being filled in — are validated afresh.
 *
 * @example
 * ```ts
 * import { WalValidator } from "./reader.ts";
 * import assert from "node:assert/strict";
 * const segmentSize = 1 << 20;
 * const v = new WalValidator({ segmentSize, magic: 0xD110, start: 0x1000000n });
 * // A zero-filled segment fails the first page header: nothing there is valid.
 * v.push(0x1000000n, new Uint8Array(8192));
 * assert.equal(v.validEnd, 0x1000000n);
 * assert.equal(v.resumeLsn, 0x1000000n);
 * assert.equal(v.error?.message, "invalid magic number 0000 in log segment 000000010000000000000010, offset 0");
 * ```
 */
export class WalValidator {
  readonly #segmentSize: number;
  readonly #blockSize: number;
  readonly #magic: number;
  #systemId: bigint | undefined;
  readonly #timeline: number;
  readonly #onRecord: ((record: WalRecordInfo) => void) | undefined;

  // Positions are numbers relative to #origin (exact for 8 PB of WAL), so the per-record work
  // needs no bigint arithmetic. #originHi/#originLo split the origin for comparisons with
  // 64-bit fields read as two 32-bit halves.
  readonly #origin: bigint;
  readonly #originHi: number;
  readonly #originLo: number;

  // Stream state.
  #pos = 0;
  #phase = PAGE_HEADER;
  #pageMode = FIND_FIRST;
  #pageHeaderLen = 0;
  readonly #pageHeader = new Uint8Array(SIZE_OF_LONG_PAGE_HEADER);
  #pageHeaderGot = 0;

  // The record being assembled.
  #recStart = 0;
  readonly #recHeader = new Uint8Array(SIZE_OF_XLOG_RECORD);
  #recGot = 0;
  #totLen = 0;
  #crc = 0;
  #contPhase = RECORD_HEADER;

  // The chain: -1 means no record read yet (random access, as XLogBeginRead).
  #prevRec = -1;
  #latestTli = 0;
  #validEnd = 0;
  #records = 0;
  #error: WalReaderError | undefined;

  // The state at the end of the last good record, to rewind to after a failure.
  #ckPos = 0;
  #ckMode = FIND_FIRST;
  #ckPrevRec = -1;
  #ckTli = 0;

  /**
   * Creates a validator that expects the segment starting at `opts.start` first.
   *
   * @param opts What the WAL must look like, where to start, and who wants the records.
   * @throws {RangeError} for an invalid segment or block size, or a start that is not a segment
   * start.
   */
  constructor(opts: WalValidatorOptions) {
    if (!isValidSegmentSize(opts.segmentSize)) {
      throw new RangeError(`invalid WAL segment size ${opts.segmentSize}`);
    }
    const blockSize = opts.blockSize ?? DEFAULT_BLOCK_SIZE;
    if (blockSize < 1024 || (blockSize & (blockSize - 1)) !== 0 || blockSize > opts.segmentSize) {
      throw new RangeError(`invalid WAL block size ${blockSize}`);
    }
    if (opts.start < 0n || opts.start % BigInt(opts.segmentSize) !== 0n) {
      throw new RangeError(`start ${formatLsn(opts.start)} is not a segment start`);
    }
    this.#segmentSize = opts.segmentSize;
    this.#blockSize = blockSize;
    this.#magic = opts.magic;
    this.#systemId = opts.systemId;
    this.#timeline = opts.timeline ?? 1;
    this.#onRecord = opts.onRecord;
    this.#origin = opts.start;
    this.#originHi = Number(opts.start >> 32n);
    this.#originLo = Number(opts.start & 0xFFFFFFFFn);
  }

  /** End of the last record that passed every check (the start, before any did). */
  get validEnd(): Lsn {
    return this.#origin + BigInt(this.#validEnd);
  }

  /**
   * Records that passed every check so far. Cheaper than counting in `onRecord`, which makes an
   * object with four LSNs for each record: most of a segment's validation time when records are
   * short.
   */
  get records(): number {
    return this.#records;
  }

  /** Where the next push must begin (at the latest): the first byte not yet consumed. */
  get resumeLsn(): Lsn {
    // A page header split between pushes is consumed as far as it has arrived.
    const partial = this.#phase === PAGE_HEADER ? this.#pageHeaderGot : 0;
    return this.#origin + BigInt(this.#pos + partial);
  }

  /** Why validation stopped at {@linkcode validEnd}; `undefined` if it only ran out of bytes. */
  get error(): WalReaderError | undefined {
    return this.#error;
  }

  /** The system identifier required of long page headers, once known. */
  get systemId(): bigint | undefined {
    return this.#systemId;
  }

  /**
   * Validates more bytes. `bytes` hold the WAL from `lsn` on, with `lsn <= resumeLsn`; bytes
   * before `resumeLsn` are skipped. The validator keeps no reference to `bytes`, so the caller
   * may reuse the buffer.
   *
   * @throws {RangeError} when `lsn` is past `resumeLsn`: that would leave a gap.
   */
  push(lsn: Lsn, bytes: Uint8Array): void {
    const skip = this.resumeLsn - lsn;
    if (skip < 0n) {
      throw new RangeError(
        `WAL pushed at ${formatLsn(lsn)} leaves a gap after ${formatLsn(this.resumeLsn)}`,
      );
    }
    if (skip >= BigInt(bytes.length)) return;
    this.#error = undefined;
    this.#run(bytes, Number(skip));
  }

  #run(c: Uint8Array, start: number): void {
    const bs = this.#blockSize;
    const n = c.length;
    let i = start;
    while (i < n) {
      switch (this.#phase) {
        case RECORD_START: {
          // The hot path: a whole record on this page and in this chunk is checked in place.
          const pos = this.#pos;
          const pageEnd = pos - (pos % bs) + bs;
          if (pageEnd - pos >= SIZE_OF_XLOG_RECORD && n - i >= SIZE_OF_XLOG_RECORD) {
            const totLen = (c[i]! | (c[i + 1]! << 8) | (c[i + 2]! << 16) | (c[i + 3]! << 24)) >>> 0;
            if (!this.#checkHeader(c, i, pos)) return;
            if (totLen <= pageEnd - pos && totLen <= n - i) {
              const stored = (c[i + 20]! | (c[i + 21]! << 8) | (c[i + 22]! << 16) |
                (c[i + 23]! << 24)) >>> 0;
              const crc = crc32cUpdate(
                crc32cUpdate(-1, c, i + SIZE_OF_XLOG_RECORD, i + totLen),
                c,
                i,
                i + XLOG_RECORD_CRC_OFFSET,
              );
              if (((crc ^ 0xFFFFFFFF) >>> 0) !== stored) {
                this.#fail(
                  pos,
                  `incorrect resource manager data checksum in record at ${this.#fmt(pos)}`,
                );
                return;
              }
              const next = this.#commit(pos, pos + totLen, c, i);
              i += next - pos;
              continue;
            }
          }
          this.#recStart = pos;
          this.#recGot = 0;
          this.#totLen = 0;
          this.#phase = RECORD_HEADER;
          break;
        }
        case RECORD_HEADER: {
          const pos = this.#pos;
          const pageLeft = bs - (pos % bs);
          const take = Math.min(SIZE_OF_XLOG_RECORD - this.#recGot, pageLeft, n - i);
          const had = this.#recGot;
          this.#recHeader.set(c.subarray(i, i + take), had);
          this.#recGot = had + take;
          this.#pos = pos + take;
          i += take;
          if (had < 4 && this.#recGot >= 4) {
            // xl_tot_len is always on the first page: records are MAXALIGNed.
            const h = this.#recHeader;
            this.#totLen = (h[0]! | (h[1]! << 8) | (h[2]! << 16) | (h[3]! << 24)) >>> 0;
            if (this.#totLen < SIZE_OF_XLOG_RECORD) {
              this.#fail(
                this.#recStart,
                `invalid record length at ${
                  this.#fmt(this.#recStart)
                }: wanted ${SIZE_OF_XLOG_RECORD}, got ${this.#totLen}`,
              );
              return;
            }
          }
          if (this.#recGot === SIZE_OF_XLOG_RECORD) {
            if (!this.#checkHeader(this.#recHeader, 0, this.#recStart)) return;
            this.#crc = -1;
            this.#phase = RECORD_BODY;
            if (this.#recGot === this.#totLen) {
              if (!this.#finishRecord()) return;
              i += this.#pos - pos - take;
              continue;
            }
          }
          if (take === pageLeft) {
            this.#contPhase = this.#phase;
            this.#phase = PAGE_HEADER;
            this.#pageMode = CONTINUATION;
          }
          break;
        }
        case RECORD_BODY: {
          const pos = this.#pos;
          const pageLeft = bs - (pos % bs);
          const take = Math.min(this.#totLen - this.#recGot, pageLeft, n - i);
          this.#crc = crc32cUpdate(this.#crc, c, i, i + take);
          this.#recGot += take;
          this.#pos = pos + take;
          i += take;
          if (this.#recGot === this.#totLen) {
            const before = this.#pos;
            if (!this.#finishRecord()) return;
            i += this.#pos - before;
          } else if (take === pageLeft) {
            this.#contPhase = RECORD_BODY;
            this.#phase = PAGE_HEADER;
            this.#pageMode = CONTINUATION;
          }
          break;
        }
        default: {
          // PAGE_HEADER: gather it (it may be split between pushes), then check it.
          let hdr = c;
          let at = i;
          const avail = n - i;
          if (this.#pageHeaderGot === 0 && avail >= SIZE_OF_LONG_PAGE_HEADER) {
            i += (c[i + 2]! & XLP_LONG_HEADER)
              ? SIZE_OF_LONG_PAGE_HEADER
              : SIZE_OF_SHORT_PAGE_HEADER;
          } else {
            const buf = this.#pageHeader;
            let got = this.#pageHeaderGot;
            let take = Math.max(0, Math.min(SIZE_OF_SHORT_PAGE_HEADER - got, avail));
            if (take > 0) buf.set(c.subarray(i, i + take), got);
            got += take;
            i += take;
            if (got >= SIZE_OF_SHORT_PAGE_HEADER && (buf[2]! & XLP_LONG_HEADER)) {
              take = Math.min(SIZE_OF_LONG_PAGE_HEADER - got, n - i);
              if (take > 0) buf.set(c.subarray(i, i + take), got);
              got += take;
              i += take;
              if (got < SIZE_OF_LONG_PAGE_HEADER) {
                this.#pageHeaderGot = got;
                return;
              }
            } else if (got < SIZE_OF_SHORT_PAGE_HEADER) {
              this.#pageHeaderGot = got;
              return;
            }
            this.#pageHeaderGot = 0;
            hdr = buf;
            at = 0;
          }
          const pageStart = this.#pos;
          if (!this.#checkPage(hdr, at, pageStart)) return;
          const next = this.#enterPage(hdr, at, pageStart);
          if (next < 0) return;
          i += next - (pageStart + this.#pageHeaderLen);
          this.#pos = next;
        }
      }
    }
  }

  /** The absolute LSN of a relative position, as text. */
  #fmt(rel: number): string {
    return formatLsn(this.#origin + BigInt(rel));
  }

  #segmentName(rel: number): string {
    const segno = (this.#origin + BigInt(rel)) / BigInt(this.#segmentSize);
    return segmentFileName(this.#timeline, segno, this.#segmentSize);
  }

  /** Whether the 64-bit little-endian value at `b[at]` equals the absolute LSN of `rel`. */
  #lsnEquals(b: Uint8Array, at: number, rel: number): boolean {
    const sum = this.#originLo + rel;
    // `>>> 0` is the remainder modulo 2^32 of any integer below 2^53, without `%` on a double
    // (a call to fmod, once per record).
    const lo = sum >>> 0;
    const hi = this.#originHi + (sum - lo) / TWO_32;
    return u32(b, at) === lo && u32(b, at + 4) === hi;
  }

  /** Whether the 64-bit little-endian value at `b[at]` is below the absolute LSN of `rel`. */
  #lsnBelow(b: Uint8Array, at: number, rel: number): boolean {
    const sum = this.#originLo + rel;
    const lo = sum >>> 0;
    const hi = this.#originHi + (sum - lo) / TWO_32;
    const vHi = u32(b, at + 4);
    return vHi < hi || (vHi === hi && u32(b, at) < lo);
  }

  /** `XLogReaderValidatePageHeader`. */
  #checkPage(b: Uint8Array, at: number, pageStart: number): boolean {
    const magic = b[at]! | (b[at + 1]! << 8);
    const info = b[at + 2]! | (b[at + 3]! << 8);
    const segOffset = pageStart % this.#segmentSize;
    const where = (): string =>
      `in log segment ${this.#segmentName(pageStart)}, offset ${segOffset}`;
    if (magic !== this.#magic) {
      return this.#fail(pageStart, `invalid magic number ${hex4(magic)} ${where()}`);
    }
    if ((info & ~XLP_ALL_FLAGS) !== 0) {
      return this.#fail(pageStart, `invalid info bits ${hex4(info)} ${where()}`);
    }
    if (info & XLP_LONG_HEADER) {
      const long = readLongPageHeader(b, at)!;
      const prefix = "WAL file is from different database system";
      if (this.#systemId === undefined) this.#systemId = long.systemId;
      if (long.systemId !== this.#systemId) {
        return this.#fail(
          pageStart,
          `${prefix}: WAL file database system identifier is ${long.systemId}, pg_control database system identifier is ${this.#systemId}`,
        );
      }
      if (long.segmentSize !== this.#segmentSize) {
        return this.#fail(pageStart, `${prefix}: incorrect segment size in page header`);
      }
      if (long.blockSize !== this.#blockSize) {
        return this.#fail(pageStart, `${prefix}: incorrect XLOG_BLCKSZ in page header`);
      }
      this.#pageHeaderLen = SIZE_OF_LONG_PAGE_HEADER;
    } else if (segOffset === 0) {
      // The first page of a segment must carry the long header.
      return this.#fail(pageStart, `invalid info bits ${hex4(info)} ${where()}`);
    } else {
      this.#pageHeaderLen = SIZE_OF_SHORT_PAGE_HEADER;
    }
    if (!this.#lsnEquals(b, at + 8, pageStart)) {
      // Typically an old segment recycled and not yet overwritten.
      const addr = (BigInt(u32(b, at + 12)) << 32n) | BigInt(u32(b, at + 8));
      return this.#fail(pageStart, `unexpected pageaddr ${formatLsn(addr)} ${where()}`);
    }
    const tli = u32(b, at + 4);
    if (tli < this.#latestTli) {
      // Child timelines always get a higher ID than their parent, so it never goes back.
      return this.#fail(
        pageStart,
        `out-of-sequence timeline ID ${tli} (after ${this.#latestTli}) ${where()}`,
      );
    }
    this.#latestTli = tli;
    return true;
  }

  /**
   * Acts on a valid page header according to what the page continues; returns where the
   * stream goes on (and sets the phase), or -1 after a failure.
   */
  #enterPage(b: Uint8Array, at: number, pageStart: number): number {
    const info = b[at + 2]! | (b[at + 3]! << 8);
    const remLen = u32(b, at + 16);
    const dataStart = pageStart + this.#pageHeaderLen;
    let mode = this.#pageMode;
    if (mode === CONTINUATION && (info & XLP_FIRST_IS_OVERWRITE_CONTRECORD)) {
      // The record we were assembling was never finished: a new record begins here instead.
      mode = BETWEEN_RECORDS;
    }
    if (mode === FIND_FIRST) {
      // As pg_waldump's XLogFindNextRecord: skip the tail of a record begun earlier.
      if (info & XLP_FIRST_IS_CONTRECORD) {
        const skip = maxAlign(remLen);
        if (skip >= this.#blockSize - this.#pageHeaderLen) {
          this.#pageMode = FIND_FIRST;
          return pageStart + this.#blockSize;
        }
        if (skip > 0) {
          this.#phase = RECORD_START;
          return dataStart + skip;
        }
      }
      mode = BETWEEN_RECORDS;
    }
    if (mode === BETWEEN_RECORDS) {
      if (info & XLP_FIRST_IS_CONTRECORD) {
        this.#fail(dataStart, `contrecord is requested by ${this.#fmt(dataStart)}`);
        return -1;
      }
      this.#phase = RECORD_START;
      return dataStart;
    }
    if (!(info & XLP_FIRST_IS_CONTRECORD)) {
      this.#fail(this.#recStart, `there is no contrecord flag at ${this.#fmt(this.#recStart)}`);
      return -1;
    }
    const expected = this.#totLen - this.#recGot;
    if (remLen === 0 || remLen !== expected) {
      this.#fail(
        this.#recStart,
        `invalid contrecord length ${remLen} (expected ${expected}) at ${
          this.#fmt(this.#recStart)
        }`,
      );
      return -1;
    }
    this.#phase = this.#contPhase;
    return dataStart;
  }

  /** `ValidXLogRecordHeader`, plus the length xlogreader can assemble. */
  #checkHeader(b: Uint8Array, at: number, recStart: number): boolean {
    const totLen = u32(b, at);
    if (totLen < SIZE_OF_XLOG_RECORD) {
      return this.#fail(
        recStart,
        `invalid record length at ${
          this.#fmt(recStart)
        }: wanted ${SIZE_OF_XLOG_RECORD}, got ${totLen}`,
      );
    }
    const rmid = b[at + 17]!;
    if (!isValidRmid(rmid)) {
      return this.#fail(recStart, `invalid resource manager ID ${rmid} at ${this.#fmt(recStart)}`);
    }
    const prevOk = this.#prevRec < 0
      // Random access: the prev-link cannot be verified, but must point backwards.
      ? this.#lsnBelow(b, at + 8, recStart)
      : this.#lsnEquals(b, at + 8, this.#prevRec);
    if (!prevOk) {
      const prev = (BigInt(u32(b, at + 12)) << 32n) | BigInt(u32(b, at + 8));
      return this.#fail(
        recStart,
        `record with incorrect prev-link ${formatLsn(prev)} at ${this.#fmt(recStart)}`,
      );
    }
    const pageLeft = this.#blockSize - (recStart % this.#blockSize);
    if (totLen > pageLeft) {
      const bufSize = totLen + this.#blockSize - (totLen % this.#blockSize);
      if (bufSize > MAX_ALLOC_SIZE) {
        return this.#fail(recStart, `record length ${totLen} at ${this.#fmt(recStart)} too long`);
      }
    }
    return true;
  }

  /** Checks the CRC of an assembled record and commits it; false after a failure. */
  #finishRecord(): boolean {
    const h = this.#recHeader;
    const crc = crc32cUpdate(this.#crc, h, 0, XLOG_RECORD_CRC_OFFSET) ^ 0xFFFFFFFF;
    if ((crc >>> 0) !== u32(h, XLOG_RECORD_CRC_OFFSET)) {
      const at = this.#recStart;
      return this.#fail(
        at,
        `incorrect resource manager data checksum in record at ${this.#fmt(at)}`,
      );
    }
    this.#commit(this.#recStart, this.#pos, h, 0);
    return true;
  }

  /**
   * Records a good record ending at `end`, moves the stream to where the next one starts and
   * makes that the rewind point; returns that position.
   */
  #commit(recStart: number, end: number, h: Uint8Array, at: number): number {
    const rmid = h[at + 17]!;
    const info = h[at + 16]!;
    let next = maxAlign(end);
    if (isXlogSwitch(rmid, info)) {
      // The rest of the segment is unused; the next record is at the next segment start.
      // (The origin is a segment start, so relative positions share its segment boundaries.)
      const seg = this.#segmentSize;
      next += (seg - (next % seg)) % seg;
    }
    if (this.#onRecord) {
      this.#onRecord({
        lsn: this.#origin + BigInt(recStart),
        end: this.#origin + BigInt(next),
        totLen: u32(h, at),
        rmid,
        info,
        xid: u32(h, at + 4),
        prev: (BigInt(u32(h, at + 12)) << 32n) | BigInt(u32(h, at + 8)),
      });
    }
    this.#prevRec = recStart;
    this.#validEnd = next;
    this.#records++;
    this.#pos = next;
    if (next % this.#blockSize === 0) {
      this.#phase = PAGE_HEADER;
      this.#pageMode = BETWEEN_RECORDS;
    } else {
      this.#phase = RECORD_START;
    }
    this.#ckPos = next;
    this.#ckMode = BETWEEN_RECORDS;
    this.#ckPrevRec = recStart;
    this.#ckTli = this.#latestTli;
    return next;
  }

  /** Records the error and rewinds to the last good state; always false. */
  #fail(rel: number, message: string): false {
    this.#error = { lsn: this.#origin + BigInt(rel), message };
    this.#pos = this.#ckPos;
    this.#prevRec = this.#ckPrevRec;
    this.#latestTli = this.#ckTli;
    this.#pageHeaderGot = 0;
    if (this.#ckMode === FIND_FIRST) {
      this.#phase = PAGE_HEADER;
      this.#pageMode = FIND_FIRST;
    } else if (this.#ckPos % this.#blockSize === 0) {
      this.#phase = PAGE_HEADER;
      this.#pageMode = BETWEEN_RECORDS;
    } else {
      this.#phase = RECORD_START;
    }
    return false;
  }
}

function u32(b: Uint8Array, at: number): number {
  return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
}

function maxAlign(n: number): number {
  return n + ((8 - (n % 8)) % 8);
}

/** What {@linkcode validateFiles} found. */
export interface ValidateFilesResult {
  /** End of the last valid record; the first segment's start if there was none. */
  validEnd: Lsn;
  /** Valid records read. */
  records: number;
  /** Why validation stopped, if a check failed (`undefined` when the files simply ended). */
  error: WalReaderError | undefined;
  /** From the first file's long page header. */
  segmentSize: number;
  /** From the first file's long page header. */
  blockSize: number;
  /** From the first file's long page header. */
  systemId: bigint;
  /** The first file's page magic. */
  magic: number;
}

/**
 * Validates consecutive segment files (`.partial` too) from the start of the first, reading them
 * in chunks. The segment size, block size, system identifier and magic come from the first file's
 * long page header. Validation stops at the first failure, or where the next file is not the
 * next segment.
 *
 * @param paths Segment files in LSN order.
 * @param opts `onRecord` is called for each valid record; `chunkSize` is the read size.
 *
 * @example
 * ```ts
 * import { validateFiles } from "./reader.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const page = new Uint8Array(8192);
 * const v = new DataView(page.buffer);
 * v.setUint16(0, 0xD110, true);
 * v.setUint16(2, 0x0002, true); // XLP_LONG_HEADER
 * v.setUint32(4, 1, true);
 * v.setBigUint64(8, 0x100000n, true);
 * v.setUint32(32, 1 << 20, true);
 * v.setUint32(36, 8192, true);
 * await Deno.writeFile(`${dir}/000000010000000000000001`, page);
 * const r = await validateFiles([`${dir}/000000010000000000000001`]);
 * // the page is fine, but no record follows its header
 * assert.equal(r.validEnd, 0x100000n);
 * assert.equal(r.error?.message, "invalid record length at 0/100028: wanted 24, got 0");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function validateFiles(
  paths: string[],
  opts: { onRecord?: (record: WalRecordInfo) => void; chunkSize?: number } = {},
): Promise<ValidateFilesResult> {
  const first = paths[0];
  if (first === undefined) throw new RangeError("no WAL files to validate");
  const long = readLongPageHeader(await readFileHead(first, SIZE_OF_LONG_PAGE_HEADER));
  if (long === undefined || !isValidSegmentSize(long.segmentSize)) {
    throw new Error(`file "${first}" does not begin with a valid long page header`);
  }
  const info = (name: string): { tli: number; segno: bigint } => {
    const base = name.slice(name.lastIndexOf("/") + 1);
    const parsed = parseWalFileName(base, long.segmentSize);
    if (parsed?.kind !== "segment") throw new Error(`"${name}" is not a WAL segment file name`);
    return parsed;
  };
  const { tli, segno } = info(first);
  const validator = new WalValidator({
    segmentSize: long.segmentSize,
    blockSize: long.blockSize,
    magic: long.magic,
    systemId: long.systemId,
    start: segmentStart(segno, long.segmentSize),
    timeline: tli,
    ...(opts.onRecord ? { onRecord: opts.onRecord } : {}),
  });
  const chunk = new Uint8Array(opts.chunkSize ?? 1 << 20);
  for (const path of paths) {
    const fileStart = segmentStart(info(path).segno, long.segmentSize);
    if (fileStart > validator.resumeLsn) break;
    using f = await Deno.open(path);
    let lsn = fileStart;
    for (;;) {
      const r = await f.read(chunk);
      if (r === null) break;
      validator.push(lsn, chunk.subarray(0, r));
      lsn += BigInt(r);
      if (validator.error) break;
      if (validator.resumeLsn > lsn) {
        // Skip straight to what the validator wants next (the rest of a switched segment).
        const skipTo = validator.resumeLsn - fileStart;
        if (skipTo >= BigInt(long.segmentSize)) break;
        await f.seek(Number(skipTo), Deno.SeekMode.Start);
        lsn = validator.resumeLsn;
      }
    }
    if (validator.error) break;
  }
  return {
    validEnd: validator.validEnd,
    records: validator.records,
    error: validator.error,
    segmentSize: long.segmentSize,
    blockSize: long.blockSize,
    systemId: long.systemId,
    magic: long.magic,
  };
}
