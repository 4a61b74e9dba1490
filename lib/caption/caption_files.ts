/**
 * Captioning image files (what `denoise caption` runs): read (or take the bytes the caller read,
 * for stdin) and decode each input, caption the
 * decodable ones in batches, and optionally store each caption in the image's metadata
 * (`--write-meta`: lib/meta's `description` edit, pixels untouched, file replaced atomically)
 * and in a kohya-style sidecar (`--sidecar`: `name.txt` beside the image, the caption and a
 * newline). Results come back one per input, in input order; an input that fails (unreadable,
 * not an image, metadata not writable) carries its error and the others go on.
 *
 * Sampling seeds follow the inputs: input k of the run uses `seed + k`, whatever the batches
 * and whichever other inputs fail.
 *
 * @module
 */
import { InputError, IoError, UsageError } from "../errors.ts";
import { decodeImage, type RawImage } from "../image/codec.ts";
import { readFileChecked } from "../io/input.ts";
import { writeFileAtomic } from "../io/output.ts";
import { writeMetadata } from "../meta/write.ts";
import { captionImages, type CaptionOptions } from "./caption.ts";
import type { CaptionModel } from "./caption_model.ts";
import { type ImageInput, sidecarPath } from "./image_inputs.ts";

/** Options of {@linkcode captionFiles}. */
export interface CaptionFilesOptions extends Omit<CaptionOptions, "seeds" | "onProgress"> {
  /** Store each caption in its image's metadata. */
  writeMeta?: boolean;
  /** Write `name.txt` beside each image. */
  sidecar?: boolean;
  /** Called with each input's result, in input order, as soon as its batch is done. */
  onResult?: (result: FileCaption) => void | Promise<void>;
  /** Called after each batch with the inputs done so far. */
  onProgress?: (done: number, total: number) => void;
}

/** What happened to one input. */
export interface FileCaption {
  /** The input. */
  input: ImageInput;
  /** Its index among the inputs. */
  index: number;
  /** The caption, when one was made. */
  caption?: string;
  /** The sidecar written, if any. */
  sidecar?: string;
  /** True when the caption was stored in the image's metadata. */
  metaWritten?: boolean;
  /** What went wrong (the caption may still be there, e.g. when only the metadata failed). */
  error?: Error;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** Reads and decodes one input; the bytes are kept for the metadata edit. */
async function readImage(input: ImageInput): Promise<{ bytes: Uint8Array; image: RawImage }> {
  let bytes = input.bytes;
  if (bytes === undefined) {
    if (input.path === undefined) {
      throw new TypeError(
        `Cannot read ${input.label}: pass its bytes (the library reads no stdin)`,
      );
    }
    bytes = await readFileChecked(input.path);
  }
  if (bytes.length === 0) {
    throw new InputError(`The image from ${input.label} is empty`, {
      hint: "pass a non-empty file",
    });
  }
  // Alpha is dropped by the processors (PIL's convert("RGB")), not composited.
  return { bytes, image: await decodeImage(bytes, { label: input.label, channels: 4 }) };
}

/**
 * Captions `inputs` with `model` and returns one result per input, in order.
 *
 * @example
 * ```ts ignore
 * const model = await loadCaptionModel("blip-image-captioning-base");
 * const results = await captionFiles(model, [{ path: "a.png", label: "a.png" }], { sidecar: true });
 * ```
 */
export async function captionFiles(
  model: CaptionModel,
  inputs: readonly ImageInput[],
  options: CaptionFilesOptions = {},
): Promise<FileCaption[]> {
  const { writeMeta = false, sidecar = false, onResult, onProgress, ...captionOptions } = options;
  const batchSize = captionOptions.batchSize ?? 8;
  const seed = captionOptions.seed ?? 0;
  if ((writeMeta || sidecar) && inputs.some((i) => i.path === undefined)) {
    throw new UsageError(
      `${writeMeta ? "--write-meta" : "--sidecar"} needs image files, not stdin`,
      { hint: "pass the images as FILE or DIR arguments" },
    );
  }
  const results: FileCaption[] = [];
  const sidecars = new Map<string, string>();
  for (let start = 0; start < inputs.length; start += batchSize) {
    const chunk = inputs.slice(start, start + batchSize).map((input, i) => ({
      result: { input, index: start + i } as FileCaption,
      bytes: undefined as Uint8Array | undefined,
      image: undefined as RawImage | undefined,
    }));
    for (const item of chunk) {
      try {
        Object.assign(item, await readImage(item.result.input));
      } catch (error) {
        item.result.error = asError(error);
      }
    }
    const ready = chunk.filter((item) => item.image !== undefined);
    if (ready.length > 0) {
      const captions = await captionImages(model, ready.map((item) => item.image!), {
        ...captionOptions,
        batchSize: ready.length,
        seeds: ready.map((item) => seed + item.result.index),
      });
      ready.forEach((item, i) => (item.result.caption = captions[i]!.text));
    }
    for (const item of chunk) {
      const { result } = item;
      const path = result.input.path;
      if (result.caption !== undefined && path !== undefined) {
        try {
          if (writeMeta) {
            let edited: Uint8Array;
            try {
              edited = writeMetadata(item.bytes!, { description: result.caption });
            } catch (error) {
              throw new InputError(
                `Cannot store the caption in "${path}": ${asError(error).message}`,
                { cause: error, hint: "PNG, JPEG and WebP files hold a caption; use --sidecar" },
              );
            }
            await writeFileAtomic(path, edited);
            result.metaWritten = true;
          }
          if (sidecar) {
            const txt = sidecarPath(path);
            const owner = sidecars.get(txt);
            if (owner !== undefined) {
              throw new IoError(
                `Cannot write "${txt}": it already holds the caption of "${owner}"`,
                {
                  hint: "two images differ only by extension; rename one",
                },
              );
            }
            await writeFileAtomic(txt, result.caption + "\n");
            sidecars.set(txt, path);
            result.sidecar = txt;
          }
        } catch (error) {
          result.error = asError(error);
        }
      }
      results.push(result);
      await onResult?.(result);
    }
    onProgress?.(results.length, inputs.length);
  }
  return results;
}
