/**
 * CRC-32 (ISO 3309 / ITU-T V.42, the polynomial PNG chunks use), table driven.
 * Reference: PNG specification, Annex D "Sample CRC implementation" (https://www.w3.org/TR/png-3/).
 *
 * @module
 */

const TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32 of `bytes`; pass the previous result as `crc` to continue over several pieces.
 *
 * @example
 * ```ts
 * import { crc32 } from "./crc32.ts";
 * const iend = new TextEncoder().encode("IEND");
 * console.assert(crc32(iend) === 0xae426082);
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    c = TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}
