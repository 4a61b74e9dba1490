import { sniffFormat } from "../lib/io/sniff.ts";

const json = new TextEncoder().encode(
  Array.from({ length: 2000 }, (_, i) => JSON.stringify({ prompt: `a cat ${i}`, seed: i }))
    .join("\n"),
);

Deno.bench("sniffFormat() on 2,000 JSON lines", () => {
  sniffFormat(json);
});
