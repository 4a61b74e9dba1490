/**
 * A minimal, defensive ZIP reader for torch.save archives: it reads the central directory
 * (ZIP64 included), checks every entry name, and reads entries or byte ranges of stored entries
 * on demand, so a multi-gigabyte checkpoint is never read whole. Deflated entries go through
 * fflate, with a size cap against decompression bombs.
 *
 * Layout per PKWARE APPNOTE.TXT sections 4.3.12 (central directory), 4.3.14-16 (ZIP64 end of
 * central directory record and locator), 4.5.3 (ZIP64 extra field), 4.3.7 (local file header).
 *
 * @module
 */

import { inflateSync } from "fflate";
import type { ByteSource } from "./byte_source.ts";

/** One file inside a ZIP archive. */
export interface ZipEntry {
  /** Path inside the archive, always with forward slashes. */
  name: string;
  /** 0 = stored, 8 = deflated. */
  method: number;
  /** Bytes stored in the archive. */
  compressedSize: number;
  /** Bytes after decompression. */
  size: number;
  /** Offset of the entry's local file header. */
  headerOffset: number;
}

/** Limits applied while reading an archive. */
export interface ZipLimits {
  /** Most entries accepted (default 1,000,000). */
  maxEntries?: number;
  /** Largest deflated entry inflated into memory (default 1 GiB). */
  maxInflatedBytes?: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_LOCATOR64 = 0x07064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

/** Throws a RangeError when `name` could escape a target folder if the archive were extracted. */
export function checkEntryName(archive: string, name: string): void {
  const bad = name === "" || name.includes("\0") || name.includes("\\") ||
    name.startsWith("/") || /^[A-Za-z]:/.test(name) ||
    name.split("/").some((part) => part === ".." || part === ".");
  if (bad) {
    throw new RangeError(
      `Refusing to read "${archive}": it contains the unsafe entry name ${JSON.stringify(name)} ` +
        `(absolute, "..", "." or backslash paths are never written by torch.save)`,
    );
  }
}

/** An open ZIP archive over a ByteSource. */
export class ZipArchive {
  /** Entries by name, in central-directory order. */
  readonly entries: Map<string, ZipEntry>;
  #source: ByteSource;
  #limits: Required<ZipLimits>;
  #dataOffsets = new Map<string, number>();

  private constructor(source: ByteSource, entries: Map<string, ZipEntry>, limits: ZipLimits) {
    this.#source = source;
    this.entries = entries;
    this.#limits = {
      maxEntries: limits.maxEntries ?? 1_000_000,
      maxInflatedBytes: limits.maxInflatedBytes ?? 2 ** 30,
    };
  }

  /** Reads and checks the central directory of the archive in `source`. */
  static async open(source: ByteSource, limits: ZipLimits = {}): Promise<ZipArchive> {
    const name = source.name;
    const fail = (what: string) => new RangeError(`Invalid ZIP archive "${name}": ${what}`);
    const tailLength = Math.min(source.size, 22 + 65535);
    if (tailLength < 22) throw fail("it is too short");
    const tailStart = source.size - tailLength;
    const tail = await source.read(tailStart, tailLength);
    const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    let eocd = -1;
    for (let i = tailLength - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === SIG_EOCD) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw fail("no end-of-central-directory record");
    let count = tv.getUint16(eocd + 10, true);
    let cdSize = tv.getUint32(eocd + 12, true);
    let cdOffset = tv.getUint32(eocd + 16, true);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const locAt = tailStart + eocd - 20;
      if (locAt < 0) throw fail("ZIP64 locator missing");
      const loc = await source.read(locAt, 20);
      const lv = new DataView(loc.buffer, loc.byteOffset, 20);
      if (lv.getUint32(0, true) !== SIG_LOCATOR64) throw fail("ZIP64 locator missing");
      const rec64At = safe(lv.getBigUint64(8, true), fail);
      const rec = await source.read(rec64At, 56);
      const rv = new DataView(rec.buffer, rec.byteOffset, 56);
      if (rv.getUint32(0, true) !== SIG_EOCD64) throw fail("ZIP64 end record missing");
      count = safe(rv.getBigUint64(32, true), fail);
      cdSize = safe(rv.getBigUint64(40, true), fail);
      cdOffset = safe(rv.getBigUint64(48, true), fail);
    }
    const maxEntries = limits.maxEntries ?? 1_000_000;
    if (count > maxEntries) throw fail(`${count} entries exceed the limit of ${maxEntries}`);
    if (cdOffset + cdSize > source.size) {
      throw fail("the central directory lies outside the file");
    }
    const cd = await source.read(cdOffset, cdSize);
    const cv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
    const decoder = new TextDecoder("utf-8", { fatal: false });
    const entries = new Map<string, ZipEntry>();
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.byteLength || cv.getUint32(p, true) !== SIG_CENTRAL) {
        throw fail(`central directory entry ${i} is damaged`);
      }
      const flags = cv.getUint16(p + 8, true);
      const method = cv.getUint16(p + 10, true);
      let compressedSize = cv.getUint32(p + 20, true);
      let size = cv.getUint32(p + 24, true);
      const nameLen = cv.getUint16(p + 28, true);
      const extraLen = cv.getUint16(p + 30, true);
      const commentLen = cv.getUint16(p + 32, true);
      let headerOffset = cv.getUint32(p + 42, true);
      if (p + 46 + nameLen + extraLen + commentLen > cd.byteLength) {
        throw fail(`central directory entry ${i} is damaged`);
      }
      const entryName = decoder.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // ZIP64 extra field: only the fields whose 32-bit value is saturated are present, in order.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cv.getUint16(e, true);
        const len = cv.getUint16(e + 2, true);
        if (id === 0x0001) {
          let q = e + 4;
          const next = () => {
            if (q + 8 > e + 4 + len) throw fail(`entry "${entryName}" has a short ZIP64 field`);
            const v = safe(cv.getBigUint64(q, true), fail);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = next();
          if (compressedSize === 0xffffffff) compressedSize = next();
          if (headerOffset === 0xffffffff) headerOffset = next();
        }
        e += 4 + len;
      }
      p += 46 + nameLen + extraLen + commentLen;
      checkEntryName(name, entryName);
      if (flags & 1) throw fail(`entry "${entryName}" is encrypted`);
      if (method !== 0 && method !== 8) {
        throw fail(`entry "${entryName}" uses compression method ${method}; only 0 and 8 work`);
      }
      if (method === 0 && compressedSize !== size) {
        throw fail(`stored entry "${entryName}" has different sizes`);
      }
      if (headerOffset + 30 + compressedSize > source.size) {
        throw fail(`entry "${entryName}" lies outside the file`);
      }
      if (entries.has(entryName)) throw fail(`entry "${entryName}" appears twice`);
      entries.set(entryName, { name: entryName, method, compressedSize, size, headerOffset });
    }
    return new ZipArchive(source, entries, limits);
  }

  /** Name of the underlying source, for messages. */
  get name(): string {
    return this.#source.name;
  }

  async #dataOffset(entry: ZipEntry): Promise<number> {
    const known = this.#dataOffsets.get(entry.name);
    if (known !== undefined) return known;
    const head = await this.#source.read(entry.headerOffset, 30);
    const hv = new DataView(head.buffer, head.byteOffset, 30);
    if (hv.getUint32(0, true) !== SIG_LOCAL) {
      throw new RangeError(
        `Invalid ZIP archive "${this.name}": entry "${entry.name}" has no local header`,
      );
    }
    const at = entry.headerOffset + 30 + hv.getUint16(26, true) + hv.getUint16(28, true);
    if (at + entry.compressedSize > this.#source.size) {
      throw new RangeError(
        `Invalid ZIP archive "${this.name}": entry "${entry.name}" runs past the end of the file`,
      );
    }
    this.#dataOffsets.set(entry.name, at);
    return at;
  }

  #entry(name: string): ZipEntry {
    const entry = this.entries.get(name);
    if (!entry) throw new RangeError(`"${this.name}" has no entry "${name}"`);
    return entry;
  }

  /** Reads a whole entry, inflating it when deflated. */
  async read(name: string): Promise<Uint8Array> {
    const entry = this.#entry(name);
    const at = await this.#dataOffset(entry);
    const raw = await this.#source.read(at, entry.compressedSize);
    if (entry.method === 0) return raw;
    if (entry.size > this.#limits.maxInflatedBytes) {
      throw new RangeError(
        `Refusing to inflate "${name}" in "${this.name}": ${entry.size} bytes exceed the ` +
          `${this.#limits.maxInflatedBytes}-byte limit`,
      );
    }
    const out = new Uint8Array(entry.size);
    let inflated: Uint8Array;
    try {
      inflated = inflateSync(raw, { out });
    } catch (error) {
      throw new RangeError(
        `Cannot inflate "${name}" in "${this.name}": ${(error as Error).message}`,
      );
    }
    if (inflated.byteLength !== entry.size) {
      throw new RangeError(
        `Entry "${name}" in "${this.name}" inflates to ${inflated.byteLength} bytes, not the ` +
          `declared ${entry.size}`,
      );
    }
    return inflated;
  }

  /**
   * Absolute offset of a stored entry's bytes in the archive file, or undefined when the entry
   * is compressed (its bytes are not there as they are).
   */
  async storedOffset(name: string): Promise<number | undefined> {
    const entry = this.#entry(name);
    return entry.method === 0 ? await this.#dataOffset(entry) : undefined;
  }

  /** Reads `length` bytes at `offset` of an entry (a sub-range read for stored entries). */
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const entry = this.#entry(name);
    if (offset < 0 || length < 0 || offset + length > entry.size) {
      throw new RangeError(
        `Cannot read bytes ${offset}..${offset + length} of "${name}" in "${this.name}": ` +
          `it has ${entry.size} bytes`,
      );
    }
    if (entry.method !== 0) return (await this.read(name)).slice(offset, offset + length);
    const at = await this.#dataOffset(entry);
    return await this.#source.read(at + offset, length);
  }

  /** Closes the underlying source. */
  close(): void {
    this.#source.close();
  }
}

function safe(v: bigint, fail: (what: string) => RangeError): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw fail("a ZIP64 size is out of range");
  return Number(v);
}
