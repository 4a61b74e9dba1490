/**
 * Fuzzing the weight readers (lib/weights): safetensors headers and tensor reads, the restricted
 * unpickler, ZIP archives and torch.save archives, and `openWeights` on files.
 */
import fc from "fast-check";
import { zipSync } from "fflate";
import { memorySource } from "../../lib/weights/byte_source.ts";
import { plainGlobals, unpickle } from "../../lib/weights/pickle.ts";
import { SafetensorsFile } from "../../lib/weights/safetensors.ts";
import { loadTorchFile, loadTorchStateDict } from "../../lib/weights/torch_zip.ts";
import { openWeights } from "../../lib/weights/weight_source.ts";
import { ZipArchive } from "../../lib/weights/zip.ts";
import { asFile, fuzz, mutatedBytes } from "./harness.ts";
import { pickleSeeds, safetensorsSeeds, torchZipSeeds } from "./seeds.ts";

Deno.test("fuzz: SafetensorsFile.fromBytes() and reading every tensor, on mutated files", async () => {
  await fuzz(mutatedBytes(safetensorsSeeds()), async (bytes) => {
    const file = SafetensorsFile.fromBytes(bytes, "fuzz.safetensors");
    try {
      for (const name of [...file.tensors.keys()].slice(0, 50)) await file.readFloat32(name);
    } finally {
      file.close();
    }
  });
});

/** Pickles that nest deeply or repeat: stack and memo growth. */
const deepPickles = fc.oneof(
  // PROTO 2, then n x EMPTY_LIST + APPEND chains: [[[[...]]]]
  fc.integer({ min: 1, max: 200_000 }).map((n) => {
    const out = new Uint8Array(2 + 2 * n + 1);
    out.set([0x80, 2]);
    for (let i = 0; i < n; i++) out[2 + i] = 0x5d; // EMPTY_LIST
    for (let i = 0; i < n - 1; i++) out[2 + n + i] = 0x61; // APPEND
    out[2 + 2 * n - 1] = 0x2e; // STOP
    return out.subarray(0, 2 + 2 * n);
  }),
  // n x MARK then STOP
  fc.integer({ min: 1, max: 200_000 }).map((n) => {
    const out = new Uint8Array(n + 3).fill(0x28);
    out.set([0x80, 2]);
    out[n + 2] = 0x2e;
    return out;
  }),
  // A list that holds itself n levels deep through the memo (BINPUT/BINGET).
  fc.integer({ min: 1, max: 50_000 }).map((n) => {
    const body: number[] = [0x80, 2, 0x5d, 0x71, 0];
    for (let i = 0; i < n; i++) body.push(0x68, 0, 0x61); // BINGET 0, APPEND (list in itself)
    body.push(0x2e);
    return Uint8Array.from(body);
  }),
);

Deno.test("fuzz: unpickle() on mutated and deeply nested pickles", async () => {
  const inputs = fc.oneof({ weight: 6, arbitrary: mutatedBytes(pickleSeeds()) }, {
    weight: 1,
    arbitrary: deepPickles,
  });
  await fuzz(inputs, (bytes) => {
    const value = unpickle(bytes, { globals: plainGlobals(), name: "fuzz.pkl" });
    // Consumers walk the value (torch_zip, embeddings): it must be finite to walk.
    walk(value);
  });
});

/** Visits up to 100,000 values of a pickle's result, without recursion. */
function walk(value: unknown): void {
  const stack = [value];
  let budget = 100_000;
  while (stack.length > 0 && budget > 0) {
    const v = stack.pop();
    const children = Array.isArray(v) ? v : v instanceof Map ? [...v.values()] : [];
    for (const child of children.slice(0, Math.min(100, budget))) stack.push(child);
    budget -= Math.min(children.length, 100) + 1;
  }
}

Deno.test("fuzz: ZipArchive reading every entry, on mutated archives", async () => {
  const seeds = [
    ...torchZipSeeds().slice(0, 2),
    zipSync({ "a.txt": new TextEncoder().encode("hello ".repeat(100)), "d/": new Uint8Array() }, {
      level: 9,
    }),
  ];
  await fuzz(mutatedBytes(seeds), async (bytes) => {
    const zip = await ZipArchive.open(memorySource(bytes, "fuzz.zip"), {
      maxInflatedBytes: 64 * 2 ** 20,
    });
    try {
      for (const name of [...zip.entries.keys()].slice(0, 50)) await zip.read(name);
    } finally {
      zip.close();
    }
  });
});

Deno.test("fuzz: loadTorchFile() and loadTorchStateDict() on mutated torch.save archives", async () => {
  await fuzz(mutatedBytes(torchZipSeeds()), async (bytes) => {
    try {
      await loadTorchFile(bytes);
    } finally {
      await loadTorchStateDict(bytes).catch((error) => {
        throw error;
      });
    }
  });
});

Deno.test("fuzz: openWeights() on mutated safetensors and torch files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-fuzz-" });
  try {
    const seeds = [...safetensorsSeeds().slice(0, 2), ...torchZipSeeds().slice(0, 3)];
    await fuzz(mutatedBytes(seeds), async (bytes) => {
      const source = await openWeights(await asFile(dir, bytes, "w.bin"));
      try {
        for (const name of source.names().slice(0, 20)) await source.readFloat32(name);
      } finally {
        source.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
