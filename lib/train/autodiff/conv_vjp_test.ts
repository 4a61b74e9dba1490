import { checkGradients, logReport } from "./testing.ts";

const cases = [
  { name: "3x3 pad 1", x: [2, 3, 5, 5], w: [4, 3, 3, 3], attrs: { pads: [1, 1, 1, 1] } },
  {
    name: "3x3 stride 2 pad 1 (odd size)",
    x: [1, 2, 5, 7],
    w: [3, 2, 3, 3],
    attrs: { pads: [1, 1, 1, 1], strides: [2, 2] },
  },
  { name: "1x1", x: [2, 4, 3, 3], w: [2, 4, 1, 1], attrs: {} },
  {
    name: "3x3 stride 2 no pad, dilation 2",
    x: [1, 2, 9, 8],
    w: [2, 2, 3, 3],
    attrs: { strides: [2, 2], dilations: [2, 2] },
  },
];
for (const c of cases) {
  Deno.test(`Conv VJP matches finite differences: ${c.name} (float32)`, async () => {
    logReport(
      `Conv ${c.name}`,
      await checkGradients({
        dtype: "float32",
        inputs: { x: { shape: c.x }, w: { shape: c.w }, b: { shape: [c.w[0]!] } },
        build: (g, { x, w, b }) =>
          g.op("Conv", [x!, w!, b!], { kernel_shape: c.w.slice(2), ...c.attrs }),
      }),
    );
  });
}

Deno.test("Conv VJP with groups matches finite differences for the input (float32)", async () => {
  logReport(
    "Conv group 2",
    await checkGradients({
      dtype: "float32",
      inputs: { x: { shape: [1, 4, 4, 4] }, w: { shape: [4, 2, 3, 3] } },
      wrt: ["x"],
      build: (g, { x, w }) =>
        g.op("Conv", [x!, w!], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], group: 2 }),
    }),
  );
});
