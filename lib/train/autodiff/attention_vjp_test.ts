import { checkGradients, logReport } from "./testing.ts";

Deno.test("MultiHeadAttention (fused) VJP matches finite differences: self and cross attention (float32)", async () => {
  logReport(
    "MHA self",
    await checkGradients({
      dtype: "float32",
      inputs: { x: { shape: [2, 3, 4] } },
      build: (g, { x }) =>
        g.op("MultiHeadAttention", [x!, x!, x!], { num_heads: 2 }, { domain: "com.microsoft" }),
    }),
  );
  logReport(
    "MHA cross",
    await checkGradients({
      dtype: "float32",
      inputs: { q: { shape: [1, 3, 4] }, k: { shape: [1, 5, 4] }, v: { shape: [1, 5, 6] } },
      build: (g, { q, k, v }) =>
        g.op("MultiHeadAttention", [q!, k!, v!], { num_heads: 2 }, { domain: "com.microsoft" }),
    }),
  );
});
