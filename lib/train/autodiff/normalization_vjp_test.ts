import { checkGradients, logReport } from "./testing.ts";

Deno.test("LayerNormalization VJP matches finite differences over one and two axes (float64)", async () => {
  for (const axis of [-1, 1]) {
    logReport(
      `LayerNormalization axis ${axis}`,
      await checkGradients({
        inputs: {
          x: { shape: [2, 3, 4] },
          w: { shape: axis === -1 ? [4] : [3, 4] },
          b: { shape: axis === -1 ? [4] : [3, 4] },
        },
        build: (g, { x, w, b }) =>
          g.op("LayerNormalization", [x!, w!, b!], { axis, epsilon: 1e-5 }),
      }),
    );
  }
});

Deno.test("InstanceNormalization VJP matches finite differences (float32)", async () => {
  logReport(
    "InstanceNormalization",
    await checkGradients({
      dtype: "float32",
      inputs: { x: { shape: [2, 3, 4, 5] }, s: { shape: [3], positive: true }, b: { shape: [3] } },
      build: (g, { x, s, b }) => g.op("InstanceNormalization", [x!, s!, b!], { epsilon: 1e-5 }),
    }),
  );
});

Deno.test("GroupNorm as the builders spell it (Reshape + InstanceNormalization + affine) (float32)", async () => {
  logReport(
    "GroupNorm",
    await checkGradients({
      dtype: "float32",
      inputs: { x: { shape: [2, 4, 3, 3] }, gamma: { shape: [4] }, beta: { shape: [4] } },
      build: (g, { x, gamma, beta }) => {
        const grouped = g.op("Reshape", [x!, g.ints([0, 2, -1])]);
        const ones = g.constant(new Float32Array([1, 1]), "float32", [2]);
        const zeros = g.constant(new Float32Array(2), "float32", [2]);
        const normed = g.op("InstanceNormalization", [grouped, ones, zeros], { epsilon: 1e-5 });
        const back = g.op("Reshape", [normed, g.op("Shape", [x!])]);
        const axes = g.ints([1, 2]);
        return g.op("Add", [
          g.op("Mul", [back, g.op("Unsqueeze", [gamma!, axes])]),
          g.op("Unsqueeze", [beta!, axes]),
        ]);
      },
    }),
  );
});

Deno.test("Softmax and LogSoftmax VJPs match finite differences (float64)", async () => {
  for (const op of ["Softmax", "LogSoftmax"]) {
    for (const axis of [-1, 1]) {
      logReport(
        `${op} axis ${axis}`,
        await checkGradients({
          inputs: { x: { shape: [2, 3, 4] } },
          build: (g, { x }) => g.op(op, [x!], { axis }),
        }),
      );
    }
  }
});
