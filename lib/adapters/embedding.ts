/**
 * Textual-inversion embeddings: reading every common file layout, and adding their vectors as
 * new rows of a text encoder's token-embedding table (the tokenizer gets the matching new ids
 * from `ClipTokenizer.addTokens`). Layouts, as A1111 modules/textual_inversion/
 * textual_inversion.py `create_embedding_from_data` and Diffusers `load_textual_inversion` read
 * them (written from reading them, not copied):
 *
 * - A1111 `.pt`: `{string_to_token, string_to_param: {"*": [N, D]}, name, step, ...}`;
 * - Diffusers `learned_embeds.bin` / `.safetensors`, cloneofsimo `.ti.pt`: `{token: [D] | [N, D]}`;
 * - `{emb_params: [N, D]}` (safetensors from A1111-era trainers);
 * - SDXL: `{clip_l: [N, 768], clip_g: [N, 1280]}` (text_encoder and text_encoder_2).
 *
 * @module
 */
import { basename, extname } from "node:path";
import { WeightsError } from "../errors.ts";
import type { TensorSource } from "../onnx/graph.ts";
import { readSource } from "../onnx/model_file.ts";
import { openWeights } from "../weights/mod.ts";
import { fileHashes } from "./hashes.ts";
import type { WeightTransform } from "./lora.ts";
import type { DenseTensor } from "./lora_math.ts";

/** The text encoders an embedding can add vectors to. */
export type EmbeddingEncoder = "text_encoder" | "text_encoder_2";

/** The layout a file was read as. */
export type EmbeddingFormat = "a1111" | "diffusers" | "emb_params" | "sdxl";

/** A textual-inversion embedding read from a file. */
export interface Embedding {
  /** The file. */
  path: string;
  /** The token that writes it in prompts (the file stem unless given). */
  name: string;
  /** How the file was laid out. */
  format: EmbeddingFormat;
  /** The token the file itself names (Diffusers key, A1111 `name`), if any. */
  fileToken: string | undefined;
  /** Vectors `[N, D]` per text encoder. */
  vectors: Partial<Record<EmbeddingEncoder, DenseTensor>>;
  /** N, the number of tokens the name expands to. */
  count: number;
}

/** Options of {@linkcode loadEmbedding}. */
export interface LoadEmbeddingOptions {
  /** The token to use instead of the file stem. */
  name?: string;
}

const TOKEN_TABLE = "text_model.embeddings.token_embedding.weight";

function asMatrix(path: string, key: string, t: DenseTensor): DenseTensor {
  if (t.shape.length === 1) return { data: t.data, shape: [1, t.shape[0]!] };
  if (t.shape.length === 2 && t.shape[0]! > 0) return t;
  throw new WeightsError(
    `Cannot use embedding "${basename(path)}": "${key}" has shape [${
      t.shape.join(", ")
    }], expected [vectors, width] or [width]`,
  );
}

/**
 * Reads a textual-inversion file (safetensors, or torch.save through the restricted unpickler).
 * Throws a RangeError naming the file when it holds no embedding.
 *
 * @example
 * ```ts ignore
 * const e = await loadEmbedding("EasyNegative.safetensors");
 * console.log(e.name, e.count, e.vectors.text_encoder?.shape); // EasyNegative 8 [8, 768]
 * ```
 */
export async function loadEmbedding(
  path: string,
  options: LoadEmbeddingOptions = {},
): Promise<Embedding> {
  const file = basename(path);
  const source = await openWeights(path);
  try {
    const names = source.names();
    const read = async (key: string): Promise<DenseTensor> =>
      asMatrix(path, key, {
        data: await source.readFloat32(key),
        shape: source.info(key).shape,
      });
    let format: EmbeddingFormat;
    let fileToken: string | undefined;
    const vectors: Partial<Record<EmbeddingEncoder, DenseTensor>> = {};
    const params = names.filter((n) => n.startsWith("string_to_param."));
    if (names.includes("clip_l") || names.includes("clip_g")) {
      format = "sdxl";
      if (names.includes("clip_l")) vectors.text_encoder = await read("clip_l");
      if (names.includes("clip_g")) vectors.text_encoder_2 = await read("clip_g");
    } else if (names.includes("emb_params")) {
      format = "emb_params";
      vectors.text_encoder = await read("emb_params");
    } else if (params.length > 0) {
      format = "a1111";
      if (params.length !== 1) {
        throw new RangeError(
          `Cannot use embedding "${file}": its string_to_param holds ${params.length} ` +
            `embeddings; A1111 files hold one`,
        );
      }
      vectors.text_encoder = await read(params[0]!);
    } else if (names.length === 1) {
      format = "diffusers";
      fileToken = names[0]!;
      vectors.text_encoder = await read(fileToken);
    } else {
      const lora = names.some((n) => /lora|hada_|lokr_|:up$|:down$/.test(n));
      throw new RangeError(
        `Cannot use "${file}" as an embedding: it holds ${names.length} tensors` +
          (lora
            ? " and looks like a LoRA; pass it with --lora"
            : "; an embedding file holds string_to_param, emb_params, clip_l/clip_g or one " +
              "{token: vectors} entry"),
      );
    }
    const counts = new Set(Object.values(vectors).map((v) => v.shape[0]!));
    if (counts.size !== 1) {
      throw new RangeError(
        `Cannot use embedding "${file}": clip_l and clip_g have different numbers of vectors`,
      );
    }
    const name = options.name ?? basename(path, extname(path));
    return { path, name, format, fileToken, vectors, count: [...counts][0]! };
  } finally {
    source.close();
  }
}

/** Where an embedding's vectors went: the token ids its name expands to, per text encoder. */
export interface PlacedEmbedding {
  /** The token. */
  name: string;
  /** N ids, the first at the end of the tokenizer's vocabulary. */
  ids: number[];
}

/** The table of one text encoder: its first free token id and its width. */
export interface EncoderTable {
  /** The tokenizer's vocabulary size: the id the first added token gets. */
  firstId: number;
  /** The width D of the token-embedding table (`hidden_size`). */
  width: number;
}

/** What {@linkcode placeEmbeddings} returns. */
export interface EmbeddingPlan {
  /** Tokens to add, in order, with the ids the tokenizer will give them. */
  tokens: PlacedEmbedding[];
  /** Per text encoder, the edit that appends the rows. */
  transforms: Partial<Record<EmbeddingEncoder, WeightTransform>>;
}

/**
 * Assigns ids to embeddings (in order, after the vocabulary, as `ClipTokenizer.addTokens` will)
 * and makes the text-encoder edits that put their vectors in those rows. Throws when a width does
 * not match the model (an embedding made for another family) or an encoder's vectors are missing.
 */
export async function placeEmbeddings(
  embeddings: readonly Embedding[],
  tables: Partial<Record<EmbeddingEncoder, EncoderTable>>,
): Promise<EmbeddingPlan> {
  const tokens: PlacedEmbedding[] = [];
  const names = new Set<string>();
  const encoders = (Object.keys(tables) as EmbeddingEncoder[]).sort();
  let next = tables.text_encoder?.firstId ?? tables.text_encoder_2?.firstId ?? 0;
  for (const e of embeddings) {
    const file = basename(e.path);
    if (names.has(e.name)) {
      throw new RangeError(`Cannot use embedding "${file}": the token "${e.name}" is taken twice`);
    }
    names.add(e.name);
    for (const enc of encoders) {
      const v = e.vectors[enc];
      const width = tables[enc]!.width;
      if (v === undefined) {
        const have = Object.keys(e.vectors).join(", ");
        throw new RangeError(
          `Cannot use embedding "${file}": it has vectors for ${have} but this model also ` +
            `needs ${enc === "text_encoder_2" ? "clip_g (SDXL)" : "clip_l"}`,
        );
      }
      if (v.shape[1] !== width) {
        throw new RangeError(
          `Cannot use embedding "${file}": its vectors are ${v.shape[1]} wide, the ${enc} ` +
            `expects ${width}; it was made for another model family`,
        );
      }
    }
    const extra = Object.keys(e.vectors).filter((k) => !encoders.includes(k as EmbeddingEncoder));
    if (extra.length > 0) {
      throw new RangeError(
        `Cannot use embedding "${file}": it is an SDXL embedding (clip_l + clip_g); use it with ` +
          `an SDXL model`,
      );
    }
    tokens.push({ name: e.name, ids: Array.from({ length: e.count }, (_, i) => next + i) });
    next += e.count;
  }
  const transforms: Partial<Record<EmbeddingEncoder, WeightTransform>> = {};
  if (tokens.length === 0) return { tokens, transforms };
  const hashes: string[] = [];
  for (const e of embeddings) hashes.push((await fileHashes(e.path)).sha256);
  for (const enc of encoders) {
    const rows = embeddings.map((e, i) => ({ ids: tokens[i]!.ids, vectors: e.vectors[enc]! }));
    transforms[enc] = {
      key: JSON.stringify({ embeddings: tokens.map((t, i) => ({ ...t, sha256: hashes[i] })) }),
      apply: (sources) => appendRows(sources, rows, tables[enc]!.width),
    };
  }
  return { tokens, transforms };
}

async function appendRows(
  sources: Map<string, TensorSource>,
  rows: ReadonlyArray<{ ids: number[]; vectors: DenseTensor }>,
  width: number,
): Promise<Map<string, TensorSource>> {
  const source = sources.get(TOKEN_TABLE);
  if (source === undefined || source.dtype !== "float32" || source.shape[1] !== width) {
    throw new RangeError(
      `Cannot add embeddings: the text encoder has no float32 "${TOKEN_TABLE}" ${width} wide`,
    );
  }
  const old = await readSource(TOKEN_TABLE, source);
  const have = source.shape[0]!;
  const last = Math.max(...rows.flatMap((r) => r.ids));
  // Rows between the table's end and the first new id (a tokenizer with more ids than the
  // table) stay zero; rows the tokenizer never produces are overwritten harmlessly.
  const count = Math.max(have, last + 1);
  const table = new Float32Array(count * width);
  table.set(new Float32Array(old.slice().buffer, 0, have * width));
  for (const { ids, vectors } of rows) {
    ids.forEach((id, i) =>
      table.set(vectors.data.subarray(i * width, (i + 1) * width), id * width)
    );
  }
  const out = new Map(sources);
  out.set(TOKEN_TABLE, { dtype: "float32", shape: [count, width], data: table });
  return out;
}
