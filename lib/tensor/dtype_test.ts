import assert from "node:assert/strict";
import {
  bf16ToF32,
  bytesToFloat32,
  dtypeByteLength,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  float32ToBytes,
  shapeSize,
} from "./dtype.ts";

const ALL16 = Uint16Array.from({ length: 65536 }, (_, i) => i);

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

Deno.test("f16ToF32() decodes known half values exactly", () => {
  const h = new Uint16Array([
    0x0000,
    0x8000,
    0x3c00,
    0xc000,
    0x7bff,
    0x0001,
    0x03ff,
    0x7c00,
    0xfc00,
  ]);
  const expected = [0, -0, 1, -2, 65504, 2 ** -24, 1023 * 2 ** -24, Infinity, -Infinity];
  const got = f16ToF32(h);
  for (let i = 0; i < expected.length; i++) assert.ok(Object.is(got[i], expected[i]), `index ${i}`);
  assert.ok(Number.isNaN(f16ToF32(new Uint16Array([0x7e00]))[0]));
});

Deno.test("f32ToF16() round-trips every half value bit-exactly", () => {
  const back = f32ToF16(f16ToF32(ALL16));
  let bad = 0;
  for (let h = 0; h < 65536; h++) {
    const isNan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    if (isNan) {
      if ((back[h]! & 0x7fff) !== 0x7e00 || (back[h]! & 0x8000) !== (h & 0x8000)) bad++;
    } else if (back[h] !== h) bad++;
  }
  assert.equal(bad, 0, `${bad} half values did not round-trip`);
});

Deno.test("f32ToF16() rounds ties to even and neighbours to nearest, like torch .half()", () => {
  // Every midpoint between consecutive finite positive halves is exactly representable in
  // float32; torch (round-to-nearest-even) sends it to the neighbour with an even mantissa, and
  // the float32 values one ulp either side go to the nearer neighbour.
  const lo = f16ToF32(ALL16.subarray(0, 0x7bff));
  const hi = f16ToF32(ALL16.subarray(1, 0x7c00));
  const mid = new Float32Array(lo.length);
  for (let i = 0; i < lo.length; i++) mid[i] = (lo[i]! + hi[i]!) / 2;
  const tie = f32ToF16(mid);
  const below = new Float32Array(mid.length);
  const above = new Float32Array(mid.length);
  const mb = bitsOf(mid), bb = bitsOf(below), ab = bitsOf(above);
  for (let i = 0; i < mid.length; i++) {
    bb[i] = mid[i] === 0 ? 0 : mb[i]! - 1;
    ab[i] = mb[i]! + 1;
  }
  const down = f32ToF16(below), up = f32ToF16(above);
  let bad = 0;
  for (let i = 0; i < mid.length; i++) {
    const even = i % 2 === 0 ? i : i + 1;
    if (tie[i] !== even || down[i] !== i || up[i] !== i + 1) bad++;
  }
  assert.equal(bad, 0, `${bad} of ${mid.length} midpoints rounded wrongly`);
  // Overflow: 65520 is the midpoint between 65504 and the next (absent) power, so it goes to Inf.
  const edge = f32ToF16(new Float32Array([65519.99, 65520, -1e9, 2 ** -26, 2 ** -25 * 1.0001]));
  assert.deepEqual([...edge], [0x7bff, 0x7c00, 0xfc00, 0x0000, 0x0001]);
  // NaN keeps its sign and becomes the canonical quiet NaN.
  assert.deepEqual([...f32ToF16(new Float32Array([NaN, -NaN]))].map((v) => v & 0x7fff), [
    0x7e00,
    0x7e00,
  ]);
});

Deno.test("f32ToBf16() round-trips every bf16 value and rounds ties to even like torch", () => {
  const back = f32ToBf16(bf16ToF32(ALL16));
  let bad = 0;
  for (let h = 0; h < 65536; h++) {
    const isNan = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
    if (isNan ? back[h] !== 0x7fc0 : back[h] !== h) bad++;
  }
  assert.equal(bad, 0, `${bad} bf16 values did not round-trip`);
  // 1 + 2^-8 is halfway between 1 (0x3f80, even) and 1 + 2^-7 (0x3f81): ties go to even.
  // 1 + 3 * 2^-8 is halfway between 0x3f81 (odd) and 0x3f82 (even).
  const v = new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, 3.4e38]);
  assert.deepEqual([...f32ToBf16(v)], [0x3f80, 0x3f82, 0x3f81, 0x7f80]);
});

Deno.test("bytesToFloat32() decodes every numeric dtype", () => {
  const le = (arr: ArrayBufferView) => new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
  assert.deepEqual([...bytesToFloat32(le(new Float64Array([1.5, -2])), "F64")], [1.5, -2]);
  assert.deepEqual([...bytesToFloat32(le(new BigInt64Array([-3n, 7n])), "I64")], [-3, 7]);
  assert.deepEqual([...bytesToFloat32(le(new Int32Array([-3, 7])), "I32")], [-3, 7]);
  assert.deepEqual([...bytesToFloat32(le(new Int8Array([-3, 7])), "I8")], [-3, 7]);
  assert.deepEqual([...bytesToFloat32(new Uint8Array([0, 2]), "BOOL")], [0, 1]);
  assert.deepEqual([...bytesToFloat32(new Uint8Array([0x38, 0xc0]), "F8_E4M3")], [1, -2]);
  assert.deepEqual([...bytesToFloat32(new Uint8Array([0x3c, 0xc0]), "F8_E5M2")], [1, -2]);
  // An unaligned view (odd byteOffset) is copied, not misread.
  const buf = new Uint8Array(9);
  buf.set(le(new Float32Array([0.25, 4])), 1);
  assert.deepEqual([...bytesToFloat32(buf.subarray(1), "F32")], [0.25, 4]);
  assert.throws(() => bytesToFloat32(new Uint8Array(3), "F16"), RangeError);
  assert.throws(() => bytesToFloat32(new Uint8Array(8), "C64"), RangeError);
});

Deno.test("float32ToBytes() and sizes agree with the dtype tables", () => {
  assert.equal(float32ToBytes(new Float32Array(3), "BF16").byteLength, 6);
  assert.equal(float32ToBytes(new Float32Array(3), "F64").byteLength, 24);
  assert.throws(() => float32ToBytes(new Float32Array(1), "I32"), RangeError);
  assert.equal(dtypeByteLength("F4", 4), 2);
  assert.throws(() => dtypeByteLength("F4", 3), RangeError);
  assert.equal(shapeSize([]), 1);
  assert.equal(shapeSize([2, 0, 5]), 0);
  assert.throws(() => shapeSize([2, -1]), RangeError);
  assert.throws(() => shapeSize([2 ** 40, 2 ** 40]), RangeError);
});
