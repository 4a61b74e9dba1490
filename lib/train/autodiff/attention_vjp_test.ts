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

Deno.test("MultiHeadAttention VJP in blocks of query rows matches finite differences", async () => {
  const { setAttentionBlockElements } = await import("./attention_vjp.ts");
  // [B=1, h=2, S=7, L=7] = 98 score elements; a budget of 30 gives 4 blocks of 2 rows.
  const before = setAttentionBlockElements(30);
  try {
    logReport(
      "MHA self, 4 blocks",
      await checkGradients({
        dtype: "float32",
        inputs: { x: { shape: [1, 7, 4] } },
        build: (g, { x }) =>
          g.op("MultiHeadAttention", [x!, x!, x!], { num_heads: 2 }, { domain: "com.microsoft" }),
      }),
    );
    logReport(
      "MHA cross, 2 blocks, key/value only",
      await checkGradients({
        dtype: "float32",
        inputs: { q: { shape: [1, 5, 4] }, k: { shape: [1, 6, 4] }, v: { shape: [1, 6, 6] } },
        wrt: ["k", "v"],
        build: (g, { q, k, v }) =>
          g.op("MultiHeadAttention", [q!, k!, v!], { num_heads: 2 }, { domain: "com.microsoft" }),
      }),
    );
  } finally {
    setAttentionBlockElements(before);
  }
});
