import assert from "node:assert/strict";
import { WeightsError } from "../errors.ts";
import {
  deltaShape,
  doraChange,
  fitsShape,
  kron,
  lowRankMisfit,
  matmul,
  moduleDelta,
  tucker,
} from "./lora_math.ts";

const t = (data: number[], shape: number[]) => ({ data: Float32Array.from(data), shape });

Deno.test("moduleDelta() LoRA: up @ down, reshaped for a 3x3 conv (LoCon)", () => {
  // up [2, 1], down [1, 1, 1, 2] (1 input channel, 1x2 kernel)
  const d = moduleDelta("m", "lora", {
    up: t([2, 3], [2, 1, 1, 1]),
    down: t([5, 7], [1, 1, 1, 2]),
  });
  assert.deepEqual(d.delta.shape, [2, 1, 1, 2]);
  assert.deepEqual([...d.delta.data], [10, 14, 15, 21]);
  assert.equal(d.rank, 1);
  assert.deepEqual(
    matmul(Float32Array.of(1, 2, 3, 4), Float32Array.of(5, 6, 7, 8), 2, 2, 2),
    Float32Array.of(19, 22, 43, 50),
  );
});

Deno.test("tucker() equals einsum('i j k l, j r, i p -> p r k l') written out", () => {
  const mid = t([1, 2, 3, 4, 5, 6, 7, 8], [2, 2, 1, 2]); // [R1=2, R2=2, 1, 2]
  const down = Float32Array.of(1, -1, 2, 0.5, 0, 3); // [R2=2, in=3]
  const up = Float32Array.of(1, 2, -1, 0.5); // [out=2, R1=2]
  const got = tucker(mid, down, up, 2, 3);
  const want = new Float32Array(2 * 3 * 2);
  for (let p = 0; p < 2; p++) {
    for (let r = 0; r < 3; r++) {
      for (let k = 0; k < 2; k++) {
        let s = 0;
        for (let i = 0; i < 2; i++) {
          for (let j = 0; j < 2; j++) {
            s += mid.data[(i * 2 + j) * 2 + k]! * down[j * 3 + r]! * up[p * 2 + i]!;
          }
        }
        want[(p * 3 + r) * 2 + k] = s;
      }
    }
  }
  assert.deepEqual(got, want);
});

Deno.test("moduleDelta() LoHa is the elementwise product of two low-rank products", () => {
  const d = moduleDelta("m", "loha", {
    hada_w1_a: t([1, 2], [2, 1]),
    hada_w1_b: t([3, 4], [1, 2]),
    hada_w2_a: t([1, -1], [2, 1]),
    hada_w2_b: t([2, 0.5], [1, 2]),
  });
  // w1 = [[3, 4], [6, 8]], w2 = [[2, 0.5], [-2, -0.5]]
  assert.deepEqual([...d.delta.data], [6, 2, -12, -4]);
  assert.equal(d.rank, 1);
});

Deno.test("moduleDelta() LoKr is kron(w1, w2); rank from w1_b, none when both are full", () => {
  const k = kron(t([1, 2], [1, 2]), t([1, 10, 100, 1000], [2, 2]));
  assert.deepEqual(k.shape, [2, 4]);
  assert.deepEqual([...k.data], [1, 10, 2, 20, 100, 1000, 200, 2000]);
  const factored = moduleDelta("m", "lokr", {
    lokr_w1_a: t([1], [1, 1]),
    lokr_w1_b: t([1, 2], [1, 2]),
    lokr_w2: t([1, 10, 100, 1000], [2, 2]),
  });
  assert.deepEqual([...factored.delta.data], [...k.data]);
  assert.equal(factored.rank, 1);
  assert.equal(
    moduleDelta("m", "lokr", { lokr_w1: t([1], [1, 1]), lokr_w2: t([1], [1, 1]) }).rank,
    undefined,
  );
  assert.deepEqual(
    deltaShape("lokr", {
      lokr_w1_a: [64, 4],
      lokr_w1_b: [4, 32],
      lokr_w2_a: [48, 4],
      lokr_w2_b: [4, 24],
    }),
    [3072, 768],
  );
});

Deno.test("fitsShape() accepts a linear change on a 1x1 conv and refuses other sizes", () => {
  assert.ok(fitsShape([320, 320], [320, 320, 1, 1]));
  assert.ok(fitsShape([320, 2880], [320, 320, 3, 3]));
  assert.ok(!fitsShape([320, 4], [320, 8]));
});

Deno.test("doraChange() rescales W + dW to the magnitude per column (LyCORIS) or row (PEFT)", () => {
  const w = Float32Array.of(3, 0, 0, 0); // [2, 2]
  const dw = Float32Array.of(0, 0, 4, 1);
  // merged = [[3, 0], [4, 1]]; column norms 5 and 1, row norms 3 and sqrt(17)
  const col = doraChange(w, dw, [2, 2], t([10, 2], [1, 2]));
  assert.deepEqual([...col].map((v) => Math.round(v * 1e5) / 1e5), [3, 0, 8, 2]);
  const row = doraChange(w, dw, [2, 2], t([6, Math.sqrt(17)], [2]));
  assert.deepEqual([...row].map((v) => Math.round(v * 1e5) / 1e5), [3, 0, 4, 1]);
});

Deno.test("moduleDelta() throws WeightsError naming the module when tensors do not fit", () => {
  const z = (shape: number[]) => ({
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
    shape,
  });
  assert.equal(lowRankMisfit([32, 3], [4, 32]), "up [32, 3] does not fit down [4, 32]");
  assert.equal(
    lowRankMisfit([8, 2], [3, 5], [2, 4, 3, 3]),
    "mid [2, 4, 3, 3] does not fit down [3, 5]",
  );
  assert.equal(lowRankMisfit([8, 2], [4, 5], [2, 4, 3, 3]), undefined);
  assert.throws(
    () => moduleDelta("m", "lora", { up: z([32, 3]), down: z([4, 32]) }),
    (e: unknown) =>
      e instanceof WeightsError &&
      e.message === 'LoRA module "m": up [32, 3] does not fit down [4, 32]',
  );
  assert.equal(deltaShape("lora", { up: [32, 3], down: [4, 32] }), undefined);
  assert.equal(
    deltaShape("loha", {
      hada_w1_a: [4, 2],
      hada_w1_b: [2, 6],
      hada_w2_a: [4, 2],
      hada_w2_b: [2, 5],
    }),
    undefined,
  );
});
