/**
 * CLIP tokenizer for Stable Diffusion text encoders: byte-level BPE identical to Hugging Face's
 * `CLIPTokenizer` with ftfy installed, plus textual-inversion tokens. One known gap: ftfy's
 * mojibake repair (`fix_encoding`) is not implemented, so text like "cafÃ©" is tokenised as
 * written where ftfy would first turn it into "café" (see fix_text.ts).
 *
 * @example
 * ```ts ignore
 * import { ClipTokenizer } from "./mod.ts";
 * const tok = await ClipTokenizer.fromDirectory("model/tokenizer");
 * tok.encode("a photo of a cat"); // [320, 1125, 539, 320, 2368]
 * ```
 *
 * @module
 */
export { ClipTokenizer } from "./clip_tokenizer.ts";
export type { ClipTokenizerFiles, ClipTokenizerOptions } from "./clip_tokenizer.ts";
export { fixText } from "./fix_text.ts";
export { whitespaceClean } from "./python_re.ts";
export { bertTokenizerJson, HfTokenizer } from "./hf_tokenizer.ts";
export type { BertTokenizerFiles, HfDecodeOptions, HfEncodeOptions } from "./hf_tokenizer.ts";
