/**
 * From a Job's adapter fields to what the pipeline needs: LoRA files named by flags or by
 * `<lora:name:te:unet>` prompt tags (found in a LoRA folder), embeddings named by flags or found
 * in an embeddings folder by their name in the prompts, all matched against one model; the
 * per-component weight edits (with cache keys), the ledger, the tokens to add to the
 * tokenizer(s) and A1111's `Lora hashes` / `TI hashes` infotext values.
 *
 * @module
 */
import { readdirSync, statSync } from "node:fs";
import { basename, extname, join } from "node:path";
import { extractNetworks, loraMultipliers } from "../prompt/networks.ts";
import {
  type EmbeddingEncoder,
  type EncoderTable,
  loadEmbedding,
  type PlacedEmbedding,
  placeEmbeddings,
} from "./embedding.ts";
import { embeddingShortHash, fileHashes, loraShortHash } from "./hashes.ts";
import {
  type ComponentWeights,
  type LoraLedger,
  type LoraSpec,
  planLoras,
  type WeightTransform,
} from "./lora.ts";
import type { LoraComponent } from "./lora_file.ts";
import type { UnetConfig } from "../models/config.ts";

/** The adapter fields of a generate / img2img Job. */
export interface AdapterJob {
  prompt: string;
  negative?: string | undefined;
  promptSyntax?: "a1111" | "plain";
  /** LoRA files with a scale and optional separate text-encoder / UNet scales. */
  lora?:
    | ReadonlyArray<
      {
        path: string;
        scale?: number | undefined;
        te?: number | undefined;
        unet?: number | undefined;
      }
    >
    | undefined;
  /** Folder searched for `<lora:name:…>` prompt tags. */
  loraDir?: string | undefined;
  /** Embedding files, each with an optional token (default: the file stem). */
  embedding?: ReadonlyArray<{ path: string; token?: string | undefined }> | undefined;
  /** Folder of embeddings usable by name in the prompts. */
  embeddingsDir?: string | undefined;
}

/** The model facts adapters are matched against. */
export interface AdapterModel {
  /** Component weight files (safetensors). */
  components: ComponentWeights;
  /** Per text encoder: tokenizer vocabulary size and hidden size. */
  tables: Partial<Record<EmbeddingEncoder, EncoderTable>>;
  /** The UNet's config, so original-LDM (SDXL kohya) module names match too. */
  unetConfig?: UnetConfig;
}

/** What {@linkcode prepareAdapters} returns. */
export interface PreparedAdapters {
  /** Identifies the whole set (empty string when there are no adapters). */
  key: string;
  /** Weight edits per component. */
  transforms: Partial<Record<LoraComponent, WeightTransform>>;
  /** What each LoRA file did. */
  ledgers: LoraLedger[];
  /** Tokens to add to the tokenizer(s), in order. */
  tokens: PlacedEmbedding[];
  /** A1111 infotext entries (`Lora hashes`, `TI hashes`), absent when unused. */
  infotext: Record<string, string>;
}

const LORA_EXTENSIONS = [".safetensors", ".pt", ".ckpt", ".bin", ".pth"];
const EMBEDDING_EXTENSIONS = [".safetensors", ".pt", ".bin"];

function walk(dir: string, extensions: readonly string[], out: string[] = []): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch (error) {
    throw new RangeError(`Cannot read the folder "${dir}": ${(error as Error).message}`);
  }
  for (const entry of entries) {
    const path = join(dir, entry);
    const stat = statSync(path);
    if (stat.isDirectory()) walk(path, extensions, out);
    else if (extensions.includes(extname(entry).toLowerCase())) out.push(path);
  }
  return out;
}

/**
 * Finds the LoRA file a `<lora:name:…>` tag means: a file in `dir` (or below) whose name without
 * extension is `name` (A1111 matches names case-insensitively when there is no exact match).
 */
export function findLora(name: string, dir: string): string {
  const files = walk(dir, LORA_EXTENSIONS);
  const stem = (p: string) => basename(p, extname(p));
  const exact = files.find((p) => stem(p) === name) ??
    files.find((p) => stem(p).toLowerCase() === name.toLowerCase());
  if (exact === undefined) {
    throw new RangeError(`The prompt uses <lora:${name}> but "${dir}" has no LoRA file "${name}"`);
  }
  return exact;
}

/** The LoRAs a Job asks for: its `lora` list, then the prompt's tags, in order. */
export function loraSpecs(job: AdapterJob): LoraSpec[] {
  const specs: LoraSpec[] = [];
  for (const l of job.lora ?? []) {
    const scale = l.scale ?? 1;
    specs.push({ path: l.path, te: l.te ?? scale, unet: l.unet ?? scale });
  }
  if (job.promptSyntax !== "plain") {
    for (const net of extractNetworks(job.prompt).networks) {
      if (net.kind !== "lora" && net.kind !== "lyco") continue;
      if (job.loraDir === undefined) {
        throw new RangeError(
          `The prompt uses <${net.kind}:${net.name}> but no LoRA folder is set; pass --lora-dir DIR`,
        );
      }
      const m = loraMultipliers(net);
      specs.push({ path: findLora(net.name, job.loraDir), name: net.name, te: m.te, unet: m.unet });
    }
  }
  return specs;
}

/**
 * The embeddings a Job asks for: its `embedding` list, then every file of `embeddingsDir` whose
 * name appears in the prompt or negative prompt (case-insensitively, as A1111 finds them).
 */
export function embeddingSpecs(job: AdapterJob): Array<{ path: string; token?: string }> {
  const specs: Array<{ path: string; token?: string }> = (job.embedding ?? []).map((e) =>
    e.token === undefined ? { path: e.path } : { path: e.path, token: e.token }
  );
  if (job.embeddingsDir !== undefined) {
    const text = `${job.prompt}\n${job.negative ?? ""}`.toLowerCase();
    const taken = new Set(specs.map((s) => s.token ?? basename(s.path, extname(s.path))));
    for (const path of walk(job.embeddingsDir, EMBEDDING_EXTENSIONS)) {
      const name = basename(path, extname(path));
      if (taken.has(name) || !text.includes(name.toLowerCase())) continue;
      taken.add(name);
      specs.push({ path });
    }
  }
  return specs;
}

function compose(
  a: WeightTransform | undefined,
  b: WeightTransform | undefined,
): WeightTransform | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  return {
    key: JSON.stringify([a.key, b.key]),
    apply: async (sources) => await b.apply(await a.apply(sources)),
  };
}

function infotextName(name: string): string {
  // A1111 removes ":" and "," from names in these lists.
  return name.replaceAll(":", "").replaceAll(",", "");
}

/**
 * Loads and matches every adapter a Job asks for against a model. Throws on a file that is not
 * a LoRA / embedding, matches nothing, or does not fit the model.
 *
 * @example
 * ```ts ignore
 * const adapters = await prepareAdapters(
 *   { prompt: "a cat <lora:detail:0.7>", negative: "EasyNegative", loraDir: "loras",
 *     embeddingsDir: "embeddings" },
 *   { components: { unet: "m/unet/diffusion_pytorch_model.safetensors" }, tables: {} },
 * );
 * console.log(adapters.infotext["Lora hashes"]);
 * ```
 */
export async function prepareAdapters(
  job: AdapterJob,
  model: AdapterModel,
): Promise<PreparedAdapters> {
  const loras = loraSpecs(job);
  const wanted = embeddingSpecs(job);
  if (loras.length === 0 && wanted.length === 0) {
    return { key: "", transforms: {}, ledgers: [], tokens: [], infotext: {} };
  }
  const plan = loras.length > 0
    ? await planLoras(
      loras,
      model.components,
      model.unetConfig ? { unetConfig: model.unetConfig } : {},
    )
    : { ledgers: [], transforms: {} };
  const embeddings = [];
  for (const w of wanted) {
    embeddings.push(await loadEmbedding(w.path, w.token === undefined ? {} : { name: w.token }));
  }
  const placed = await placeEmbeddings(embeddings, model.tables);
  const transforms: Partial<Record<LoraComponent, WeightTransform>> = {};
  for (const c of ["unet", "text_encoder", "text_encoder_2"] as const) {
    const t = compose(
      c === "unet" ? undefined : placed.transforms[c],
      (plan.transforms as Partial<Record<LoraComponent, WeightTransform>>)[c],
    );
    if (t !== undefined) transforms[c] = t;
  }
  const infotext: Record<string, string> = {};
  const loraHashes = new Map<string, string>();
  for (const [i, spec] of loras.entries()) {
    const name = infotextName(spec.name ?? plan.ledgers[i]?.name ?? basename(spec.path));
    loraHashes.set(name, loraShortHash(await fileHashes(spec.path)));
  }
  if (loraHashes.size > 0) {
    infotext["Lora hashes"] = [...loraHashes].map(([n, h]) => `${n}: ${h}`).join(", ");
  }
  const tiHashes: string[] = [];
  for (const e of embeddings) {
    tiHashes.push(`${infotextName(e.name)}: ${embeddingShortHash(await fileHashes(e.path))}`);
  }
  if (tiHashes.length > 0) infotext["TI hashes"] = tiHashes.join(", ");
  const key = JSON.stringify(
    Object.entries(transforms).map(([c, t]) => [c, t.key]),
  );
  return { key, transforms, ledgers: plan.ledgers, tokens: placed.tokens, infotext };
}

/** The ledger as text lines for `--debug`. */
export function describeLedgers(ledgers: readonly LoraLedger[]): string[] {
  const lines: string[] = [];
  for (const l of ledgers) {
    lines.push(
      `LoRA "${l.name}" (${l.path}): ${l.applied.length} modules applied, ` +
        `${l.unmatched.length} not in the model, ${l.ignored.length} tensors ignored`,
    );
    for (const a of l.applied) lines.push(`  applied ${a.module} -> ${a.component}.${a.target}`);
    for (const u of l.unmatched) lines.push(`  not in the model: ${u}`);
    for (const t of l.ignored) lines.push(`  ignored tensor: ${t}`);
  }
  return lines;
}
