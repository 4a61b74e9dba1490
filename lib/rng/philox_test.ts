import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { philox4x32, PhiloxGenerator } from "./philox.ts";

// Sources of the vectors below:
// 1. Random123 (D. E. Shaw Research) tests/kat_vectors, the published known answers for
//    philox4x32 with 10 rounds; the block function of A1111's rng_philox.py is that algorithm.
// 2. The docstring of AUTOMATIC1111/stable-diffusion-webui modules/rng_philox.py (commit
//    5ef669de080814067961f28357256e8fe27544f4): `Generator(seed=0).randn(shape=(3, 4))` printed
//    with 8 decimals. Those printed values are only close to what the file's numpy code returns
//    (they differ by up to 1.8e-7), so they are checked with atol 5e-7.
// 3. torch's CUDA output that "NV" imitates: `torch.manual_seed(42); torch.randn(2, 5,
//    device="cuda")`, printed with 4 decimals in a docstring of flashinfer-ai/flashinfer
//    (flashinfer/logits_processor/, LogitsPipe/Sample example); checked with atol 1e-4.
// 4. Exact float32 values computed with numpy 2.4.6 by an independent restatement of
//    rng_philox.py's arithmetic (uint32 words times float32 constants promote to float64;
//    numpy's log, sqrt and sin; final cast to float32); compared bit for bit.

Deno.test("philox4x32() matches Random123's known-answer vectors for Philox4x32-10", () => {
  const kat: [number[], number[], number[]][] = [
    [[0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]],
    [
      [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
      [0xffffffff, 0xffffffff],
      [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ],
    [
      [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
      [0xa4093822, 0x299f31d0],
      [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ],
  ];
  for (const [ctr, key, want] of kat) {
    const got = philox4x32(Uint32Array.from(ctr), key[0]!, key[1]!);
    assert.deepEqual(Array.from(got), want, `ctr ${ctr.map((x) => x.toString(16))}`);
  }
});

/** Philox4x32-10 written with BigInt arithmetic, as a slow independent check of the fast one. */
function philoxBigInt(ctr: number[], key: number[]): number[] {
  const mask = 0xffffffffn;
  let [c0, c1, c2, c3] = ctr.map(BigInt) as [bigint, bigint, bigint, bigint];
  let [k0, k1] = key.map(BigInt) as [bigint, bigint];
  for (let round = 0; round < 10; round++) {
    if (round > 0) [k0, k1] = [(k0 + 0x9e3779b9n) & mask, (k1 + 0xbb67ae85n) & mask];
    const p0 = c0 * 0xd2511f53n;
    const p1 = c2 * 0xcd9e8d57n;
    [c0, c1, c2, c3] = [(p1 >> 32n) ^ c1 ^ k0, p1 & mask, (p0 >> 32n) ^ c3 ^ k1, p0 & mask];
  }
  return [c0, c1, c2, c3].map(Number);
}

Deno.test("philox4x32() equals a BigInt Philox4x32-10 on 2000 pseudo-random inputs", () => {
  let x = 0x12345678;
  const next = () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0);
  for (let i = 0; i < 2000; i++) {
    const ctr = [next(), next(), next(), next()];
    const key = [next(), next()];
    if (i === 0) ctr.fill(0xffffffff); // largest products
    assert.deepEqual(
      Array.from(philox4x32(Uint32Array.from(ctr), key[0]!, key[1]!)),
      philoxBigInt(ctr, key),
    );
  }
});

function assertClose(got: Float32Array, want: number[], atol: number, label: string): void {
  assert.equal(got.length, want.length, `${label}: length`);
  const diff = Math.max(...want.map((w, i) => Math.abs(got[i]! - w)));
  assert.ok(diff <= atol, `${label}: maxdiff ${diff} > ${atol}; got ${Array.from(got)}`);
}

Deno.test("PhiloxGenerator.randn() matches A1111's documented output for seed 0, shape (3, 4)", () => {
  assertClose(
    new PhiloxGenerator(0).randn([3, 4]),
    [
      -0.92466259,
      -0.42534415,
      -2.6438457,
      0.14518388,
      -0.12086647,
      -0.57972564,
      -0.62285122,
      -0.32838709,
      -1.07454231,
      -0.36314407,
      -1.67105067,
      2.26550497,
    ],
    5e-7,
    "seed 0 (3, 4)",
  );
});

Deno.test("PhiloxGenerator.randn() imitates torch CUDA randn for seed 42 (4 decimals)", () => {
  assertClose(
    new PhiloxGenerator(42).randn([2, 5]),
    [
      0.1940,
      2.1614,
      -0.1721,
      0.8491,
      -1.9244,
      0.6530,
      -0.6494,
      -0.8175,
      0.5280,
      -1.2753,
    ],
    1e-4,
    "seed 42 (2, 5)",
  );
});

Deno.test("PhiloxGenerator.randn() is bit-exact with the numpy arithmetic of rng_philox.py", () => {
  const exact = (got: Float32Array, want: number[], label: string) =>
    assert.deepEqual(Array.from(got), want.map(Math.fround), label);
  const g0 = new PhiloxGenerator(0);
  exact(g0.randn([12]), [
    -0.9246624112129211,
    -0.42534396052360535,
    -2.643845796585083,
    0.14518387615680695,
    -0.12086650729179382,
    -0.5797256827354431,
    -0.6228513121604919,
    -0.32838714122772217,
    -1.0745420455932617,
    -0.3631440997123718,
    -1.6710504293441772,
    2.265505075454712,
  ], "seed 0 offset 0");
  // second call: offset 1
  exact(g0.randn([8]), [
    0.18082588911056519,
    -0.5522627234458923,
    0.9238134026527405,
    -0.7349703311920166,
    1.3799946308135986,
    0.8676307201385498,
    0.12965592741966248,
    -0.9406399726867676,
  ], "seed 0 offset 1");
  exact(new PhiloxGenerator(42).randn([8]), [
    0.1940188705921173,
    2.1613738536834717,
    -0.17205095291137695,
    0.8490599989891052,
    -1.9243992567062378,
    0.6529852747917175,
    -0.6494410634040833,
    -0.8175245523452759,
  ], "seed 42");
  // the high word of the seed is the second key word (unlike torch's CPU generator)
  exact(new PhiloxGenerator(2n ** 32n + 5n).randn([8]), [
    -2.842747449874878,
    1.3404923677444458,
    0.272230863571167,
    1.4550628662109375,
    -0.7352960705757141,
    -0.5022603273391724,
    0.5238111019134521,
    0.17881092429161072,
  ], "seed 2^32 + 5");
  const gMax = new PhiloxGenerator(2n ** 64n - 1n);
  gMax.randn([1]);
  gMax.randn([0]); // an empty call still advances the offset, as in A1111
  gMax.randn([2, 2]);
  assert.equal(gMax.offset, 3);
  exact(gMax.randn([8]), [
    -0.9817537069320679,
    -0.9293725490570068,
    0.7180110216140747,
    1.372809886932373,
    0.21577872335910797,
    -1.3709015846252441,
    1.0236588716506958,
    -1.5111134052276611,
  ], "seed 2^64 - 1 offset 3");
  // a whole SD latent (4x64x64 values, seed 0, offset 0), sha256 of the float32 bytes
  const latent = new PhiloxGenerator(0).randn([1, 4, 64, 64]);
  assert.equal(
    createHash("sha256").update(new Uint8Array(latent.buffer)).digest("hex"),
    "a4acb2fcf4d688e9300f25ebfdc48dad0005ed99daa99aa5791fa93cab507537",
  );
});

Deno.test("PhiloxGenerator element i depends only on (seed, call number, i)", () => {
  const big = new PhiloxGenerator(7).randn([1000]);
  const small = new PhiloxGenerator(7).randn([10]);
  assert.deepEqual(Array.from(small), Array.from(big.subarray(0, 10)));
  const g = new PhiloxGenerator(7);
  g.randn([3]);
  assert.notDeepEqual(Array.from(g.randn([10])), Array.from(small));
});

Deno.test("PhiloxGenerator gives standard normal statistics", () => {
  const x = new PhiloxGenerator(123).randn([200000]);
  let sum = 0, sq = 0;
  for (const v of x) {
    assert.ok(Number.isFinite(v));
    sum += v;
    sq += v * v;
  }
  const mean = sum / x.length;
  const std = Math.sqrt(sq / x.length - mean * mean);
  assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  assert.ok(Math.abs(std - 1) < 0.01, `std ${std}`);
});

Deno.test("PhiloxGenerator rejects bad seeds and shapes", () => {
  assert.throws(() => new PhiloxGenerator(-5), RangeError);
  assert.throws(() => new PhiloxGenerator(2n ** 64n), RangeError);
  assert.throws(() => new PhiloxGenerator(0).randn([-1]), TypeError);
});
