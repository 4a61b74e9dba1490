import assert from "node:assert/strict";
import { crc32 } from "./crc32.ts";

Deno.test("crc32() matches the CRC-32 check value and PNG's IEND CRC", () => {
  assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
  assert.equal(crc32(new TextEncoder().encode("IEND")), 0xae426082);
  assert.equal(crc32(new Uint8Array()), 0);
});

Deno.test("crc32() continues across pieces", () => {
  const all = new TextEncoder().encode("hello, world");
  assert.equal(crc32(all.subarray(5), crc32(all.subarray(0, 5))), crc32(all));
});
