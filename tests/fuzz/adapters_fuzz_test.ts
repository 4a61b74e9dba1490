/**
 * Fuzzing the adapter loaders (lib/adapters): LoRA-family files (kohya, LyCORIS, PEFT) and
 * textual-inversion files (safetensors and torch.save), and the module math that reads them.
 */
import { loadEmbedding } from "../../lib/adapters/embedding.ts";
import { openLoraFile } from "../../lib/adapters/lora_file.ts";
import { moduleDelta, type ModuleTensors } from "../../lib/adapters/lora_math.ts";
import { asFile, fuzz, mutatedBytes } from "./harness.ts";
import { embeddingSeeds, loraSeeds } from "./seeds.ts";

Deno.test("fuzz: openLoraFile() and every module's delta, on mutated LoRA files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-fuzz-" });
  try {
    await fuzz(mutatedBytes(loraSeeds()), async (bytes) => {
      const lora = await openLoraFile(await asFile(dir, bytes, "lora.safetensors"));
      try {
        for (const module of lora.modules.slice(0, 20)) {
          const tensors: ModuleTensors = {};
          for (const [role, name] of Object.entries(module.tensors)) {
            const info = lora.source.info(name);
            // Skip what a real merge would refuse by size before reading (see lora.ts).
            if (info.shape.reduce((a, b) => a * b, 1) > 1 << 22) return;
            tensors[role] = { data: await lora.source.readFloat32(name), shape: info.shape };
          }
          moduleDelta(module.key, module.algorithm, tensors);
        }
      } finally {
        lora.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: loadEmbedding() on mutated textual-inversion files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-fuzz-" });
  try {
    await fuzz(mutatedBytes(embeddingSeeds()), async (bytes) => {
      await loadEmbedding(await asFile(dir, bytes, "embedding.pt"));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
