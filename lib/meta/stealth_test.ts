import assert from "node:assert/strict";
import { gzipSync } from "fflate";
import { hasShared, sharedPath } from "../../tests/shared.ts";
import { readMetadata } from "./read.ts";
import { decodeStealthInfo, type StealthPixels } from "./stealth.ts";
import { addStealthInfo } from "./read.ts";
import { concatBytes, encodeUtf8 } from "./text.ts";

/** Hides `payload` after `signature` in the alpha (or RGB) LSBs, column by column. */
function hide(signature: string, payload: Uint8Array, mode: "alpha" | "rgb"): StealthPixels {
  const width = 40;
  const height = 40;
  const data = new Uint8Array(width * height * 4).fill(200);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, payload.length * 8);
  const bytes = concatBytes([encodeUtf8(signature), length, payload]);
  const bits: number[] = [];
  for (const b of bytes) for (let i = 7; i >= 0; i--) bits.push((b >> i) & 1);
  let k = 0;
  for (let x = 0; x < width && k < bits.length; x++) {
    for (let y = 0; y < height && k < bits.length; y++) {
      const at = (y * width + x) * 4;
      const slots = mode === "alpha" ? [3] : [0, 1, 2];
      for (const s of slots) {
        if (k < bits.length) data[at + s] = (data[at + s]! & 0xfe) | bits[k++]!;
      }
    }
  }
  return { width, height, channels: 4, data };
}

Deno.test("decodeStealthInfo() reads alpha/rgb, plain/gzip stealth pnginfo", () => {
  const text = "a fox, テスト\nSteps: 20, Seed: 3, Size: 40x40";
  const plain = encodeUtf8(text);
  assert.deepEqual(decodeStealthInfo(hide("stealth_pnginfo", plain, "alpha")), {
    mode: "alpha",
    compressed: false,
    text,
  });
  assert.equal(decodeStealthInfo(hide("stealth_pngcomp", gzipSync(plain), "alpha"))?.text, text);
  assert.equal(decodeStealthInfo(hide("stealth_rgbinfo", plain, "rgb"))?.mode, "rgb");
  assert.equal(decodeStealthInfo(hide("stealth_rgbcomp", gzipSync(plain), "rgb"))?.text, text);
  assert.equal(decodeStealthInfo(hide("not_a_signature", plain, "alpha")), undefined);
});

Deno.test({
  name: "addStealthInfo() finds the A1111 parameters in the real stealth-pnginfo fixture",
  ignore: !hasShared,
  async fn() {
    const bytes = Deno.readFileSync(
      sharedPath("fixtures/real/a1111/sdparsers_a1111_stealth_pnginfo.png"),
    );
    const meta = readMetadata(bytes);
    await addStealthInfo(bytes, meta);
    assert.equal(meta.stealth?.mode, "alpha");
    assert.equal(meta.stealth?.compressed, true);
    assert.equal(meta.a1111?.source, "stealth");
    assert.equal(meta.a1111?.prompt, "a circle");
    assert.equal(meta.a1111?.negativePrompt, "a square");
    assert.equal(meta.a1111?.summary.seed, 2015833630);
  },
});

Deno.test("decodeStealthInfo() reports damaged gzip data as a SyntaxError", () => {
  const gz = gzipSync(encodeUtf8("a cat\nSteps: 20"));
  const damaged = gz.slice();
  damaged.set([0xff, 0xff], 10); // an invalid deflate block type
  for (const payload of [damaged, gz.subarray(0, 12)]) {
    assert.throws(
      () => decodeStealthInfo(hide("stealth_pngcomp", payload, "alpha")),
      (e: unknown) => e instanceof SyntaxError && /does not gunzip/.test(String(e)),
    );
  }
});
