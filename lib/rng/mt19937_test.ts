import assert from "node:assert/strict";
import { MAX_SEED, Mt19937, normalizeSeed } from "./mt19937.ts";

// Reference outputs of mt19937 with the reference seed 5489 (Matsumoto & Nishimura's
// mt19937ar.c), and the 10000th output that C++11 [rand.predef] requires of std::mt19937.
Deno.test("Mt19937.nextUint32() matches the reference mt19937 stream for seed 5489", () => {
  const engine = new Mt19937(5489);
  assert.deepEqual(
    [0, 1, 2, 3, 4].map(() => engine.nextUint32()),
    [3499211612, 581869302, 3890346734, 3586334585, 545404204],
  );
  const again = new Mt19937(5489n);
  let last = 0;
  for (let i = 0; i < 10000; i++) last = again.nextUint32();
  assert.equal(last, 4123659995);
});

Deno.test("Mt19937.fillUint32() continues the same stream as nextUint32()", () => {
  const a = new Mt19937(7);
  const b = new Mt19937(7);
  const expected = Array.from({ length: 2000 }, () => a.nextUint32());
  const got = new Uint32Array(2000);
  b.fillUint32(got.subarray(0, 3)); // mixed chunk sizes across the 624-word regeneration
  b.fillUint32(got.subarray(3, 1300));
  for (let i = 1300; i < 1500; i++) got[i] = b.nextUint32();
  b.fillUint32(got.subarray(1500));
  assert.deepEqual(Array.from(got), expected);
});

Deno.test("Mt19937 seeds from the low 32 bits of a 64-bit seed, like torch", () => {
  const low = new Mt19937(5).nextUint32();
  assert.equal(new Mt19937(2n ** 32n + 5n).nextUint32(), low);
  assert.equal(new Mt19937(2 ** 32 + 5).nextUint32(), low);
  assert.equal(new Mt19937(MAX_SEED).nextUint32(), new Mt19937(0xffffffff).nextUint32());
  assert.equal(new Mt19937(2n ** 63n).nextUint32(), new Mt19937(0).nextUint32());
});

Deno.test("normalizeSeed() accepts [0, 2^64 - 1] and rejects the rest", () => {
  assert.equal(normalizeSeed(0), 0n);
  assert.equal(normalizeSeed(2 ** 63), 2n ** 63n);
  assert.equal(normalizeSeed(MAX_SEED), 2n ** 64n - 1n);
  assert.throws(() => normalizeSeed(-1), RangeError);
  assert.throws(() => normalizeSeed(-1n), RangeError);
  assert.throws(() => normalizeSeed(2n ** 64n), RangeError);
  assert.throws(() => normalizeSeed(2 ** 64), RangeError);
  assert.throws(() => normalizeSeed(1.5), RangeError);
  assert.throws(() => normalizeSeed(NaN), RangeError);
  assert.throws(() => normalizeSeed("1" as unknown as number), TypeError);
});
