import { checkGradients, logReport } from "./testing.ts";

Deno.test("MatMul VJP matches finite differences: batched, broadcast and shared-weight forms", async () => {
  logReport(
    "MatMul [2,3,4]@[2,4,5]",
    await checkGradients({
      inputs: { a: { shape: [2, 3, 4] }, b: { shape: [2, 4, 5] } },
      build: (g, { a, b }) => g.op("MatMul", [a!, b!]),
    }),
  );
  logReport(
    "MatMul [2,2,3,4]@[4,5]",
    await checkGradients({
      inputs: { a: { shape: [2, 2, 3, 4] }, b: { shape: [4, 5] } },
      build: (g, { a, b }) => g.op("MatMul", [a!, b!]),
    }),
  );
  logReport(
    "MatMul [3,4]@[2,4,5]",
    await checkGradients({
      inputs: { a: { shape: [3, 4] }, b: { shape: [2, 4, 5] } },
      build: (g, { a, b }) => g.op("MatMul", [a!, b!]),
    }),
  );
});

for (const [transA, transB] of [[0, 0], [0, 1], [1, 0], [1, 1]] as const) {
  Deno.test(`Gemm VJP matches finite differences (transA ${transA}, transB ${transB}, alpha, beta, bias)`, async () => {
    const a = transA ? [4, 3] : [3, 4];
    const b = transB ? [5, 4] : [4, 5];
    logReport(
      `Gemm ${transA}${transB}`,
      await checkGradients({
        inputs: { a: { shape: a }, b: { shape: b }, c: { shape: [5] } },
        build: (g, x) =>
          g.op("Gemm", [x.a!, x.b!, x.c!], { transA, transB, alpha: 0.7, beta: 1.3 }),
      }),
    );
  });
}
