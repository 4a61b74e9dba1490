import { checkGradients, logReport } from "./testing.ts";

Deno.test("ReduceSum, ReduceMean and ReduceSumSquare VJPs match finite differences (float64)", async () => {
  logReport(
    "ReduceSum axes [0,2] keepdims 0",
    await checkGradients({
      inputs: { x: { shape: [2, 3, 4] } },
      build: (g, { x }) => g.op("ReduceSum", [x!, g.ints([0, 2])], { keepdims: 0 }),
    }),
  );
  logReport(
    "ReduceMean axes [-1]",
    await checkGradients({
      inputs: { x: { shape: [2, 3, 4] } },
      build: (g, { x }) => g.op("ReduceMean", [x!], { axes: [-1] }),
    }),
  );
  logReport(
    "ReduceMean all",
    await checkGradients({
      inputs: { x: { shape: [2, 3, 4] } },
      build: (g, { x }) => g.op("ReduceMean", [x!], { keepdims: 0 }),
    }),
  );
  logReport(
    "ReduceSumSquare axes [1]",
    await checkGradients({
      inputs: { x: { shape: [2, 3] } },
      build: (g, { x }) => g.op("ReduceSumSquare", [x!], { axes: [1] }),
    }),
  );
});
