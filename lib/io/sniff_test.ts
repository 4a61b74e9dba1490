import assert from "node:assert/strict";
import { sniffFormat } from "./sniff.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("sniffFormat() tells images apart by magic bytes, not names", () => {
  assert.equal(
    sniffFormat(new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0])),
    "png",
  );
  assert.equal(sniffFormat(new Uint8Array([0xff, 0xd8, 0xff, 0xe0])), "jpeg");
  assert.equal(sniffFormat(enc("RIFF\x10\x00\x00\x00WEBPVP8 ")), "webp");
  assert.equal(sniffFormat(enc("RIFF\x10\x00\x00\x00WAVEfmt ")), "unknown");
  assert.equal(sniffFormat(enc("GIF89a....")), "gif");
  assert.equal(sniffFormat(enc("GIF87a....")), "gif");
  assert.equal(sniffFormat(new Uint8Array([0x89, 0x50, 0x4e])), "unknown");
});

Deno.test("sniffFormat() recognises JSON documents and JSON lines", () => {
  assert.equal(sniffFormat(enc('  {"a": 1}\n')), "json");
  assert.equal(sniffFormat(enc("[1, 2]")), "json");
  assert.equal(sniffFormat(enc('{"a": 1}\n{"a": 2}\n\n')), "jsonl");
  assert.equal(sniffFormat(enc('{"a": 1}\n{"a": ')), "unknown");
  assert.equal(sniffFormat(enc("hello")), "unknown");
  assert.equal(sniffFormat(new Uint8Array([0xc3, 0x28])), "unknown");
  assert.equal(sniffFormat(new Uint8Array()), "unknown");
});
