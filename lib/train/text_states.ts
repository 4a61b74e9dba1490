/**
 * Text conditioning for training: prompts tokenised as train_text_to_image_lora.py does
 * (`tokenizer(captions, max_length=77, padding="max_length", truncation=True)`) and encoded by
 * the frozen CLIP text encoder (`text_encoder(input_ids)[0]`, the last hidden state), with the
 * states of every prompt kept, so each caption is encoded once per run.
 *
 * @module
 */
import { buildClipTextModel, type ClipTextConfig } from "../models/clip_text.ts";
import { cacheKey, createCachedSession, fileIdentity } from "../onnx/cache.ts";
import type { ExecutionProvider, OnnxSession } from "../onnx/session.ts";
import { hostTensor } from "../onnx/session.ts";
import { tensorSources } from "../onnx/tensor_sources.ts";
import { ClipTokenizer } from "../tokenizer/clip_tokenizer.ts";
import { SafetensorsFile } from "../weights/safetensors.ts";

/** Options of {@linkcode TextStates.open}. */
export interface TextStatesOptions {
  /** Folder for the built graph. */
  graphDir: string;
  /** Keep ORT's optimised graph there too (default false). */
  cacheOptimized?: boolean;
  threads?: number;
  executionProvider?: ExecutionProvider;
}

/** A frozen text encoder with a cache of encoded prompts. */
export class TextStates {
  readonly tokenizer: ClipTokenizer;
  /** Tokens per prompt (77). */
  readonly sequenceLength: number;
  /** Width of a state (the UNet's cross-attention width). */
  readonly width: number;
  #session: OnnxSession;
  #cache = new Map<string, Record<string, Float32Array>>();

  private constructor(tokenizer: ClipTokenizer, session: OnnxSession, width: number) {
    this.tokenizer = tokenizer;
    this.sequenceLength = tokenizer.modelMaxLength;
    this.width = width;
    this.#session = session;
  }

  /**
   * Builds (or reuses from `graphDir`) the text encoder graph and opens it.
   *
   * @example
   * ```ts ignore
   * const te = await TextStates.open(cfg, "text_encoder/model.safetensors", "tokenizer", { graphDir });
   * const states = await te.encode(["a photo of a cat"]); // [1, 77, 768]
   * ```
   */
  static async open(
    config: ClipTextConfig,
    weights: string,
    tokenizerDir: string,
    options: TextStatesOptions,
  ): Promise<TextStates> {
    const tokenizer = await ClipTokenizer.fromDirectory(tokenizerDir);
    const key = cacheKey({
      builder: "clip_text@train-1",
      weights: await fileIdentity(weights),
      config,
    });
    const { session } = await createCachedSession(
      options.graphDir,
      key,
      async () => {
        using file = await SafetensorsFile.open(weights);
        const sources = tensorSources(file);
        const vocab = sources.get("text_model.embeddings.token_embedding.weight")?.shape[0];
        return buildClipTextModel({ ...config, vocabSize: vocab ?? config.vocabSize }, sources, {
          source: weights,
        });
      },
      {
        cacheOptimized: options.cacheOptimized ?? false,
        ...(options.threads === undefined ? {} : { threads: options.threads }),
        ...(options.executionProvider === undefined
          ? {}
          : { executionProvider: options.executionProvider }),
      },
    );
    return new TextStates(tokenizer, session, config.hiddenSize);
  }

  /** `[prompts.length, 77, width]` last hidden states, row-major. */
  async encode(prompts: readonly string[]): Promise<Float32Array> {
    return (await this.encodeOutputs(prompts, ["last_hidden_state"])).last_hidden_state!;
  }

  /**
   * The named encoder outputs (`last_hidden_state`, `hidden_states.<i>`, `text_embeds`...) of
   * every prompt, each stacked over the prompts (`[prompts.length, ...]`, row-major). Each
   * prompt is encoded once per run.
   */
  async encodeOutputs(
    prompts: readonly string[],
    names: readonly string[],
  ): Promise<Record<string, Float32Array>> {
    const rows: Array<Record<string, Float32Array>> = [];
    for (const prompt of prompts) {
      const key = `${names.join("\0")}\0\0${prompt}`;
      let row = this.#cache.get(key);
      if (row === undefined) {
        const ids = this.tokenizer.encodePadded(prompt);
        const result = await this.#session.run({
          input_ids: hostTensor("int64", BigInt64Array.from(ids, (v) => BigInt(v)), [
            1,
            ids.length,
          ]),
        }, [...names]);
        row = {};
        for (const name of names) row[name] = result[name]!.data as Float32Array;
        this.#cache.set(key, row);
      }
      rows.push(row);
    }
    const out: Record<string, Float32Array> = {};
    for (const name of names) {
      const per = rows[0]![name]!.length;
      const stacked = new Float32Array(rows.length * per);
      rows.forEach((r, b) => stacked.set(r[name]!, b * per));
      out[name] = stacked;
    }
    return out;
  }

  /** Frees the session. */
  async release(): Promise<void> {
    await this.#session.release();
  }
}
