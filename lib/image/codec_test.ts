import assert from "node:assert/strict";
import { InputError } from "../errors.ts";
import { decodeImage, encodeImage } from "./codec.ts";

/** Byte offset and length of each chunk of a PNG. */
function chunks(png: Uint8Array): Array<{ type: string; at: number; length: number }> {
  const view = new DataView(png.buffer, png.byteOffset, png.byteLength);
  const out = [];
  for (let at = 8; at < png.length;) {
    const length = view.getUint32(at);
    out.push({ type: String.fromCharCode(...png.subarray(at + 4, at + 8)), at, length });
    at += 12 + length;
  }
  return out;
}

Deno.test("decodeImage() names the damage in a PNG with a bad CRC or cut short, not 'Unknown error'", async () => {
  const png = await encodeImage(
    { width: 4, height: 3, channels: 3, data: new Uint8Array(36).fill(90) },
    "png",
  );
  assert.equal((await decodeImage(png)).width, 4);
  const list = chunks(png);
  const ihdr = list.find((c) => c.type === "IHDR")!;
  const idat = list.find((c) => c.type === "IDAT")!;
  const cases: Array<[Uint8Array, RegExp]> = [];
  const badIhdr = png.slice();
  badIhdr[ihdr.at + 8 + ihdr.length]! ^= 0xff;
  cases.push([badIhdr, /: PNG chunk "IHDR" at byte 8 fails its CRC check$/]);
  const badIdat = png.slice();
  badIdat[idat.at + 8 + idat.length]! ^= 0xff;
  cases.push([badIdat, new RegExp(`: PNG chunk "IDAT" at byte ${idat.at} fails its CRC check$`)]);
  cases.push([
    png.slice(0, idat.at + 12 + (idat.length >> 1)),
    /: the PNG is cut short: chunk "IDAT" at byte \d+ claims/,
  ]);
  for (const [bytes, message] of cases) {
    await assert.rejects(
      () => decodeImage(bytes, { label: "a.png" }),
      (e: unknown) =>
        e instanceof InputError && /^Cannot decode the image from a\.png: /.test(e.message) &&
        message.test(e.message) && /damaged/.test(e.hint ?? ""),
    );
  }
});
