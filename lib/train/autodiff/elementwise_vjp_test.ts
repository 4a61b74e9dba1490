import { checkGradients, logReport as log } from "./testing.ts";

const binary = ["Add", "Sub", "Mul", "Div"] as const;
for (const op of binary) {
  Deno.test(`${op} VJP matches finite differences with broadcasting (float64)`, async () => {
    log(
      op,
      await checkGradients({
        inputs: {
          a: { shape: [2, 3, 4], positive: op === "Div" },
          b: { shape: [3, 1], positive: true },
        },
        build: (g, { a, b }) => g.op(op, [a!, b!]),
      }),
    );
  });
}

Deno.test("Pow VJP matches finite differences for constant and tensor exponents", async () => {
  log(
    "Pow x^2",
    await checkGradients({
      inputs: { x: { shape: [2, 3] } },
      build: (g, { x }) => g.op("Pow", [x!, g.scalar(2, "float64")]),
    }),
  );
  log(
    "Pow x^e",
    await checkGradients({
      inputs: { x: { shape: [2, 3], positive: true }, e: { shape: [3], positive: true } },
      build: (g, { x, e }) => g.op("Pow", [x!, e!]),
    }),
  );
});

const unary = ["Neg", "Identity", "Sigmoid", "Tanh", "Exp", "Sin", "Cos", "Abs", "Relu"] as const;
for (const op of unary) {
  Deno.test(`${op} VJP matches finite differences (float64)`, async () => {
    log(
      op,
      await checkGradients({
        inputs: { x: { shape: [3, 4] } },
        build: (g, { x }) => g.op(op, [x!]),
      }),
    );
  });
}

for (const op of ["Log", "Sqrt", "Reciprocal"] as const) {
  Deno.test(`${op} VJP matches finite differences on positive inputs (float64)`, async () => {
    log(
      op,
      await checkGradients({
        inputs: { x: { shape: [3, 4], positive: true } },
        build: (g, { x }) => g.op(op, [x!]),
      }),
    );
  });
}

Deno.test("Erf VJP (exact GELU's) matches finite differences (float32)", async () => {
  log(
    "Erf",
    await checkGradients({
      dtype: "float32",
      inputs: { x: { shape: [3, 4] } },
      build: (g, { x }) => g.op("Erf", [x!]),
    }),
  );
});

Deno.test("Sum, Where and float Cast VJPs match finite differences", async () => {
  log(
    "Sum",
    await checkGradients({
      inputs: { a: { shape: [2, 3] }, b: { shape: [3] }, c: { shape: [2, 1] } },
      build: (g, { a, b, c }) => g.op("Sum", [a!, b!, c!]),
    }),
  );
  log(
    "Where",
    await checkGradients({
      inputs: { a: { shape: [2, 3] }, b: { shape: [1, 3] } },
      build: (g, { a, b }) =>
        g.op("Where", [g.op("Greater", [a!, g.scalar(0, "float64")]), a!, b!]),
    }),
  );
  log(
    "Cast",
    await checkGradients({
      inputs: { a: { shape: [2, 3] } },
      build: (g, { a }) => g.op("Cast", [g.op("Cast", [a!], { to: 1 })], { to: 11 }),
      step: 1e-3,
      tolerance: 1e-4,
    }),
  );
});

Deno.test("a value used several times sums its contributions (x * sigmoid(x), SiLU)", async () => {
  log(
    "SiLU",
    await checkGradients({
      inputs: { x: { shape: [4, 5] } },
      build: (g, { x }) => g.op("Mul", [x!, g.op("Sigmoid", [x!])]),
    }),
  );
});
