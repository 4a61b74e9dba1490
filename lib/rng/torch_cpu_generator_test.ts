import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { hasShared, readSharedJson } from "../../tests/shared.ts";
import { TorchCpuGenerator } from "./torch_cpu_generator.ts";

// Reference: shared/golden/randn.json, made with torch 1.13.0a0 on x86-64 (see its `how` field).
// Tolerance: none. Arrays are compared by the sha256 of their little-endian bytes; on a
// mismatch the message gives the max |diff| against the stored 7-significant-digit values.

interface Case {
  seed?: number;
  shape: number[];
  dtype: "float32" | "float64";
  sha256_le: string;
  values?: number[];
  first64?: number[];
  last64?: number[];
  min?: number;
  max?: number;
}
interface Golden {
  randn: Case[];
  rand: Case[];
  randn_f64: Case[];
  sequences: { seed: number; calls: Case[] }[];
  global_manual_seed0_randn_1x4x4x4: Case;
  sd_latent_seed0_1x4x64x64: Case;
}

const golden = hasShared ? readSharedJson<Golden>("golden/randn.json") : undefined;

function sha256le(a: Float32Array | Float64Array): string {
  return createHash("sha256").update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength))
    .digest("hex");
}

/** Max |got - want| / max(1, |want|) over the stored decimal values. */
function maxDiff(got: Float32Array | Float64Array, c: Case): number {
  let worst = 0;
  const check = (want: number[] | undefined, start: number) => {
    want?.forEach((w, i) => {
      worst = Math.max(worst, Math.abs(got[start + i]! - w) / Math.max(1, Math.abs(w)));
    });
  };
  check(c.values, 0);
  check(c.first64, 0);
  check(c.last64, got.length - 64);
  return worst;
}

function assertMatches(got: Float32Array | Float64Array, c: Case, label: string): void {
  assert.equal(got.length, c.shape.reduce((a, b) => a * b, 1), `${label}: length`);
  const diff = maxDiff(got, c);
  // The stored decimals have 7 significant digits: a real mismatch shows up above 1e-6.
  assert.ok(diff <= 1e-6, `${label}: maxdiff ${diff} against the stored values`);
  assert.equal(sha256le(got), c.sha256_le, `${label}: not bit-exact (maxdiff ${diff})`);
}

Deno.test({
  name: "TorchCpuGenerator.randn() matches torch bit for bit for every golden seed and shape",
  ignore: !hasShared,
  fn() {
    assert.ok(golden!.randn.length >= 21);
    for (const c of golden!.randn) {
      const got = new TorchCpuGenerator(c.seed!).randn(c.shape);
      assertMatches(got, c, `seed ${c.seed} shape [${c.shape}]`);
      if (c.min !== undefined) {
        // min/max are stored with 7 significant digits
        assert.ok(Math.abs(Math.min(...got) - c.min) <= 1e-5, `min ${Math.min(...got)}`);
        assert.ok(Math.abs(Math.max(...got) - c.max!) <= 1e-5, `max ${Math.max(...got)}`);
      }
    }
  },
});

Deno.test({
  name: "TorchCpuGenerator.randn() gives the Diffusers SD latent for seed 0 (1x4x64x64)",
  ignore: !hasShared,
  fn() {
    const c = golden!.sd_latent_seed0_1x4x64x64;
    assertMatches(new TorchCpuGenerator(0).randn(c.shape), c, "seed 0 [1,4,64,64]");
  },
});

Deno.test({
  name: "TorchCpuGenerator(0) equals torch.manual_seed(0) on the global generator",
  ignore: !hasShared,
  fn() {
    const c = golden!.global_manual_seed0_randn_1x4x4x4;
    assertMatches(new TorchCpuGenerator(0).randn(c.shape), c, "global seed 0 [1,4,4,4]");
  },
});

Deno.test({
  name: "TorchCpuGenerator continues the stream over successive randn() calls like torch",
  ignore: !hasShared,
  fn() {
    // Includes [7] then [16] and [16] then [7] (the scalar path's cached second normal survives
    // a vectorised call) and [17], [17], [3] (tail recomputation consumes 16 extra uniforms).
    assert.ok(golden!.sequences.length >= 5);
    for (const seq of golden!.sequences) {
      const g = new TorchCpuGenerator(seq.seed);
      seq.calls.forEach((c, i) => {
        assertMatches(g.randn(c.shape), c, `seed ${seq.seed} call ${i} shape [${c.shape}]`);
      });
    }
  },
});

Deno.test({
  name: "TorchCpuGenerator.randnFloat64() matches torch.randn(dtype=float64) bit for bit",
  ignore: !hasShared,
  fn() {
    for (const c of golden!.randn_f64) {
      const got = new TorchCpuGenerator(c.seed!).randnFloat64(c.shape);
      assertMatches(got, c, `float64 seed ${c.seed} shape [${c.shape}]`);
    }
  },
});

Deno.test({
  name: "TorchCpuGenerator.rand() matches torch.rand bit for bit",
  ignore: !hasShared,
  fn() {
    for (const c of golden!.rand) {
      const got = new TorchCpuGenerator(c.seed!).rand(c.shape);
      assertMatches(got, c, `rand seed ${c.seed} shape [${c.shape}]`);
    }
  },
});

// The tests below need no shared folder. Expected values were taken from
// shared/golden/randn.json (torch 1.13.0a0) so a user's clone still checks bit-exactness.

Deno.test("TorchCpuGenerator.randn() reproduces torch's seed-0 SD latent (sha256, no shared data)", () => {
  const got = new TorchCpuGenerator(0).randn([1, 4, 64, 64]);
  assert.equal(
    sha256le(got),
    "24efac55b39e95b2d74d8fb5b3a8e8a8e808bd04129f260c4cdbb225bb952a4d",
    `first values ${Array.from(got.subarray(0, 4))}`,
  );
});

Deno.test("TorchCpuGenerator.randn() takes torch's scalar path below 16 and Box–Muller-16 from 16", () => {
  const close = (got: Float32Array, want: number[]) => {
    const diff = Math.max(...want.map((w, i) => Math.abs(got[i]! - w)));
    assert.ok(diff <= 1e-6, `maxdiff ${diff}: got ${Array.from(got)}`);
  };
  // torch.randn(15, generator=Generator().manual_seed(0)): normal_distribution<double>
  close(new TorchCpuGenerator(0).randn([15]), [
    1.540996,
    -0.2934289,
    -2.178789,
    0.5684313,
    -1.084522,
    -1.398595,
    0.4033468,
    0.8380263,
    -0.7192576,
    -0.4033435,
    -0.5966353,
    0.1820365,
    -0.8566746,
    1.100604,
    -1.071187,
  ]);
  // torch.randn(16, ...): uniforms then normal_fill_16_AVX2
  close(new TorchCpuGenerator(0).randn([16]), [
    -1.12584,
    -1.15236,
    -0.2505786,
    -0.4338788,
    0.8487104,
    0.6920092,
    -0.3160128,
    -2.115219,
    0.3222749,
    -1.263335,
    0.3499832,
    0.3081339,
    0.1198415,
    1.237658,
    1.116777,
    -0.2472782,
  ]);
  // torch.randn(17, ...): the last 16 are redrawn, so only element 0 matches the [16] case
  close(new TorchCpuGenerator(0).randn([17]), [
    -1.12584,
    -1.695931,
    0.5666506,
    0.7935084,
    0.5988395,
    -1.555095,
    -0.3413604,
    1.853006,
    0.4680964,
    -0.5854976,
    -0.1733968,
    0.1834779,
    1.389366,
    1.586334,
    0.9462984,
    -0.8436767,
    0.9318266,
  ]);
});

Deno.test("TorchCpuGenerator keeps the cached second normal across calls", () => {
  const whole = new TorchCpuGenerator(3).randn([7]);
  const g = new TorchCpuGenerator(3);
  const parts = [...g.randn([1]), ...g.randn([2]), ...g.randn([4])];
  assert.deepEqual(parts, Array.from(whole));
  // a vectorised call neither uses nor clears the cache
  const h = new TorchCpuGenerator(3);
  const first = h.randn([1])[0]!;
  h.randn([32]);
  assert.notEqual(h.randn([1])[0], first);
  const k = new TorchCpuGenerator(3);
  k.randn([1]);
  assert.equal(k.randnFloat64([1])[0], new TorchCpuGenerator(3).randnFloat64([2])[1]);
});

Deno.test("TorchCpuGenerator uses the low 32 bits of the seed and keeps the full seed", () => {
  const sameAs = (a: number | bigint, b: number | bigint) =>
    assert.deepEqual(new TorchCpuGenerator(a).randn([20]), new TorchCpuGenerator(b).randn([20]));
  sameAs(2 ** 32 + 5, 5);
  sameAs(2n ** 63n, 0);
  sameAs(2n ** 64n - 1n, 4294967295);
  assert.equal(new TorchCpuGenerator(2n ** 64n - 1n).initialSeed, 2n ** 64n - 1n);
  assert.notDeepEqual(new TorchCpuGenerator(1).randn([20]), new TorchCpuGenerator(0).randn([20]));
});

Deno.test("TorchCpuGenerator.rand() stays in [0, 1) with 24-bit resolution", () => {
  const u = new TorchCpuGenerator(1).rand([100000]);
  let sum = 0;
  for (const x of u) {
    assert.ok(x >= 0 && x < 1, `${x} outside [0, 1)`);
    assert.equal(x * 2 ** 24, Math.floor(x * 2 ** 24));
    sum += x;
  }
  assert.ok(Math.abs(sum / u.length - 0.5) < 0.005, `mean ${sum / u.length}`);
});

Deno.test("TorchCpuGenerator rejects bad seeds and shapes", () => {
  assert.throws(() => new TorchCpuGenerator(-1), RangeError);
  assert.throws(() => new TorchCpuGenerator(2n ** 64n), RangeError);
  assert.throws(() => new TorchCpuGenerator(0.5), RangeError);
  const g = new TorchCpuGenerator(0);
  assert.throws(() => g.randn([2, -1]), TypeError);
  assert.throws(() => g.randn([1.5]), TypeError);
  assert.equal(g.randn([]).length, 1);
  assert.equal(g.randn([0, 4]).length, 0);
});
