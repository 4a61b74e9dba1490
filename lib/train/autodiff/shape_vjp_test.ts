import { checkGradients, logReport } from "./testing.ts";

Deno.test("Reshape, Transpose, Unsqueeze, Squeeze and Flatten VJPs match finite differences", async () => {
  logReport(
    "Reshape+Transpose",
    await checkGradients({
      inputs: { x: { shape: [2, 3, 4] } },
      build: (g, { x }) =>
        g.op("Transpose", [g.op("Reshape", [x!, g.ints([4, -1, 2])])], { perm: [2, 0, 1] }),
    }),
  );
  logReport(
    "Unsqueeze+Squeeze+Flatten",
    await checkGradients({
      inputs: { x: { shape: [2, 1, 3] } },
      build: (g, { x }) => {
        const u = g.op("Unsqueeze", [g.op("Squeeze", [x!, g.ints([1])]), g.ints([0])]);
        return g.op("Flatten", [u], { axis: 2 });
      },
    }),
  );
});

Deno.test("Concat and Split VJPs match finite differences, with an unused split output", async () => {
  logReport(
    "Concat",
    await checkGradients({
      inputs: { a: { shape: [2, 3] }, b: { shape: [2, 1] }, c: { shape: [2, 2] } },
      build: (g, { a, b, c }) => g.op("Concat", [a!, b!, c!], { axis: -1 }),
    }),
  );
  logReport(
    "Split",
    await checkGradients({
      inputs: { x: { shape: [2, 6] } },
      build: (g, { x }) => {
        const [p, , r] = g.opN("Split", [x!, g.ints([2, 3, 1])], 3, { axis: 1 });
        return g.op("Mul", [p!, g.op("Concat", [r!, r!], { axis: 1 })]);
      },
    }),
  );
});

Deno.test("Slice, Pad, Expand and Tile VJPs match finite differences", async () => {
  logReport(
    "Slice",
    await checkGradients({
      inputs: { x: { shape: [3, 5] } },
      build: (g, { x }) => g.op("Slice", [x!, g.ints([1, -4]), g.ints([3, 100]), g.ints([0, 1])]),
    }),
  );
  logReport(
    "Pad",
    await checkGradients({
      inputs: { x: { shape: [1, 2, 3, 3] } },
      build: (g, { x }) =>
        g.op("Pad", [x!, g.ints([0, 0, 1, 0, 0, 0, 0, 2]), g.scalar(0, "float64")], {
          mode: "constant",
        }),
    }),
  );
  logReport(
    "Pad (negative: crop)",
    await checkGradients({
      inputs: { x: { shape: [4, 5] } },
      build: (g, { x }) => g.op("Pad", [x!, g.ints([-1, 1, 0, -2])]),
    }),
  );
  logReport(
    "Expand",
    await checkGradients({
      inputs: { x: { shape: [3, 1] } },
      build: (g, { x }) => g.op("Expand", [x!, g.ints([2, 3, 4])]),
    }),
  );
  logReport(
    "Tile",
    await checkGradients({
      inputs: { x: { shape: [2, 3] } },
      build: (g, { x }) => g.op("Tile", [x!, g.ints([2, 3])]),
    }),
  );
});

Deno.test("Gather (embedding lookup, repeated indices, axis 1) and GatherND VJPs match finite differences", async () => {
  logReport(
    "Gather axis 0",
    await checkGradients({
      inputs: {
        table: { shape: [5, 3] },
        ids: { shape: [2, 3], dtype: "int64", data: [1, 4, 1, 0, -1, 1] },
      },
      wrt: ["table"],
      build: (g, { table, ids }) => g.op("Gather", [table!, ids!], { axis: 0 }),
    }),
  );
  logReport(
    "Gather axis 1",
    await checkGradients({
      inputs: { x: { shape: [2, 4, 3] }, ids: { shape: [3], dtype: "int64", data: [3, 0, 3] } },
      wrt: ["x"],
      build: (g, { x, ids }) => g.op("Gather", [x!, ids!], { axis: 1 }),
    }),
  );
  logReport(
    "GatherND",
    await checkGradients({
      inputs: { x: { shape: [3, 4] }, ids: { shape: [2, 2], dtype: "int64", data: [0, 1, 2, 3] } },
      wrt: ["x"],
      build: (g, { x, ids }) => g.op("GatherND", [x!, ids!]),
    }),
  );
  logReport(
    "GatherND batch_dims 1 (CLIP's pooler)",
    await checkGradients({
      inputs: { x: { shape: [2, 4, 3] }, ids: { shape: [2, 1], dtype: "int64", data: [3, 1] } },
      wrt: ["x"],
      build: (g, { x, ids }) => g.op("GatherND", [x!, ids!], { batch_dims: 1 }),
    }),
  );
});
