/**
 * Fuzzing the readers of untrusted text: job documents (`--job`, lib/job.ts), JSON-lines
 * sniffing (lib/io/sniff.ts; the jobs-file reader itself lives in commands/), prompts (the
 * chevrotain grammar and the A1111 prompt functions, lib/prompt) and models.lock.json
 * (lib/hub/lock.ts).
 */
import fc from "fast-check";
import { lockedModel, parseLock } from "../../lib/hub/lock.ts";
import { sniffFormat } from "../../lib/io/sniff.ts";
import {
  GenerateJob,
  Img2ImgJob,
  loadJobDocument,
  readJobLines,
  resolveJob,
} from "../../lib/job/mod.ts";
import {
  extractNetworks,
  loraMultipliers,
  parseComposite,
  parsePrompt,
  parsePromptAttention,
  promptSchedules,
} from "../../lib/prompt/mod.ts";
import { asFile, fuzz, mutatedBytes } from "./harness.ts";
import { jobSeeds, lockSeeds, pngSeeds } from "./seeds.ts";

const enc = new TextEncoder();

/** JSON-ish text: seeds mutated as bytes, random JSON values, and deep nesting. */
function jsonInputs(seeds: string[], extra: Uint8Array[] = []): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 6, arbitrary: mutatedBytes([...seeds.map((s) => enc.encode(s)), ...extra]) },
    { weight: 2, arbitrary: fc.json({ maxDepth: 6 }).map((s) => enc.encode(s)) },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom("[", '{"a":'))
        .map(([n, open]) => enc.encode(open.repeat(n))),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(fc.integer({ min: 1, max: 20_000 }), fc.boolean()).map(([n, obj]) =>
        enc.encode(obj ? '{"a":'.repeat(n) + "1" + "}".repeat(n) : "[".repeat(n) + "]".repeat(n))
      ),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        seed: fc.oneof(fc.string(), fc.double(), fc.bigInt().map(String), fc.constant(null)),
        steps: fc.oneof(fc.integer(), fc.string(), fc.double()),
        width: fc.oneof(fc.integer(), fc.constant(1e308)),
        prompt: fc.string(),
      }).map((fields) => enc.encode(JSON.stringify({ command: "generate", ...fields }))),
    },
  );
}

Deno.test("fuzz: loadJobDocument() and resolveJob() on mutated job documents", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-fuzz-" });
  try {
    // pngSeeds()[2] carries a denoise Job chunk: `--job image.png`.
    await fuzz(jsonInputs(jobSeeds(), [pngSeeds()[2]!]), async (bytes) => {
      const path = await asFile(dir, bytes, "job.json");
      const { document, label } = await loadJobDocument(path);
      for (
        const [schema, command] of [[GenerateJob, "generate"], [Img2ImgJob, "img2img"]] as const
      ) {
        try {
          resolveJob(schema, command, { document, documentLabel: label });
        } catch (error) {
          // A job for the other command is a usage error; that is a typed answer too.
          if (!(error instanceof Error) || !/is for "denoise/.test(error.message)) throw error;
        }
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fuzz: sniffFormat() on JSON lines and other mutated text", async () => {
  const lines = jobSeeds().map((s) => JSON.stringify(JSON.parse(s))).join("\n");
  await fuzz(jsonInputs([lines, ...jobSeeds()]), (bytes) => sniffFormat(bytes));
});

Deno.test("fuzz: readJobLines() (generate --jobs) on mutated JSON-lines files", async () => {
  const dir = await Deno.makeTempDir({ prefix: "denoise-fuzz-" });
  try {
    const lines = jobSeeds().map((s) => JSON.stringify(JSON.parse(s))).join("\n");
    await fuzz(jsonInputs([lines, ...jobSeeds()]), async (bytes) => {
      const path = await asFile(dir, bytes, "jobs.jsonl");
      await readJobLines(path, GenerateJob, "generate");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Prompt text: grammar pieces, random strings and deep nesting. */
const PROMPT_PIECES = fc.constantFrom(
  "(",
  ")",
  "[",
  "]",
  ":",
  "|",
  "\\",
  ",",
  " ",
  "a",
  "cat",
  "1.5",
  "0.3",
  "-2",
  "1e400",
  "nan",
  "AND",
  "BREAK",
  "<lora:x:0.5>",
  "<lora:",
  "<hypernet:h:1:2:3>",
  ">",
  "\n",
  "テ",
  "\u{1F98A}",
  "\ud800",
);

const prompts = fc.oneof(
  { weight: 6, arbitrary: fc.array(PROMPT_PIECES, { maxLength: 120 }).map((p) => p.join("")) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 200 }) },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 1, max: 50_000 }), fc.constantFrom("(", "[", "[a:")).map(
      ([n, open]) => open.repeat(n) + "x" + (open === "(" ? ")" : "]").repeat(n),
    ),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1, max: 5_000 }).map((n) => "[a:b:0.5]".repeat(n) + " AND x:2"),
  },
);

Deno.test("fuzz: the prompt parsers on prompt-like text", async () => {
  await fuzz(prompts, (text) => {
    try {
      parsePrompt(text);
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
    }
    const { networks } = extractNetworks(text);
    for (const network of networks) if (network.kind === "lora") loraMultipliers(network);
    parseComposite(text);
    parsePromptAttention(text);
    promptSchedules(text, 20);
    promptSchedules(text, 20, { hiresSteps: 10 });
  });
});

Deno.test("fuzz: parseLock() and lockedModel() on mutated lock files", async () => {
  await fuzz(jsonInputs(lockSeeds()), (bytes) => {
    const lock = parseLock(new TextDecoder().decode(bytes), "fuzz.lock.json");
    for (const alias of Object.keys(lock.models).slice(0, 3)) lockedModel(lock, alias);
    lockedModel(lock, "no-such-alias");
  });
});
