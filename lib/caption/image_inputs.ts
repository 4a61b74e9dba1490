/**
 * The images `denoise caption` reads: files named on the command line (whatever their
 * extension), the image files under named folders (walked recursively; `.png .jpg .jpeg .webp
 * .gif .tif .tiff .avif`, case-insensitive; hidden entries skipped; sorted by path, code unit by
 * code unit, so every run lists them in the same order), or stdin (`-`, or nothing named).
 *
 * @module
 */
import { extname, join } from "node:path";
import { UsageError } from "../errors.ts";
import { toIoError } from "../io/input.ts";

/** Extensions of the image files taken from folders. */
export const IMAGE_EXTENSIONS: readonly string[] = [
  ".png",
  ".jpg",
  ".jpeg",
  ".webp",
  ".gif",
  ".tif",
  ".tiff",
  ".avif",
];

/** One image to caption: a file, or stdin (`path` undefined). */
export interface ImageInput {
  /** The file, or undefined for stdin. */
  path?: string;
  /** What messages call it: the path, or "stdin". */
  label: string;
  /** The bytes, when the caller has read them (stdin: the command reads it, not the library). */
  bytes?: Uint8Array;
}

/** The images of a command line and whether it named exactly one image (not a folder). */
export interface ImageInputs {
  images: ImageInput[];
  /** True when the inputs were one file or stdin, so the output can be the caption alone. */
  single: boolean;
}

async function walk(dir: string, out: string[]): Promise<void> {
  const entries: Array<{ name: string; isDirectory: boolean; isFile: boolean }> = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.name.startsWith(".")) entries.push(e);
    }
  } catch (error) {
    throw toIoError(error, `Cannot list "${dir}"`);
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory) await walk(path, out);
    else if (e.isFile && IMAGE_EXTENSIONS.includes(extname(e.name).toLowerCase())) out.push(path);
  }
}

/**
 * Expands the command line's inputs: folders into their image files (sorted), files as they
 * are, `-` (or no input) as stdin. A path that does not exist stays in the list (reading it
 * fails later, for that image only).
 *
 * @example
 * ```ts ignore
 * const { images, single } = await listImageInputs(["photos/", "extra.jpg"]);
 * ```
 */
export async function listImageInputs(inputs: readonly string[]): Promise<ImageInputs> {
  if (inputs.length === 0) return { images: [{ label: "stdin" }], single: true };
  const images: ImageInput[] = [];
  let folders = 0;
  for (const input of inputs) {
    if (input === "-") {
      if (images.some((i) => i.path === undefined)) {
        throw new UsageError('"-" (stdin) is named twice', { hint: "name stdin once" });
      }
      images.push({ label: "stdin" });
      continue;
    }
    let isDirectory = false;
    try {
      isDirectory = (await Deno.stat(input)).isDirectory;
    } catch {
      // Missing or unreadable: reported when it is read.
    }
    if (!isDirectory) {
      images.push({ path: input, label: input });
      continue;
    }
    folders++;
    const found: string[] = [];
    await walk(input, found);
    found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const path of found) images.push({ path, label: path });
  }
  return { images, single: inputs.length === 1 && folders === 0 };
}

/**
 * The kohya-style caption file of an image: the same path with the extension replaced by
 * `.txt` (`a/b.png` -> `a/b.txt`; a file without an extension gets `.txt` appended).
 *
 * @example
 * ```ts
 * import { sidecarPath } from "./image_inputs.ts";
 * console.assert(sidecarPath("shots/cat.final.JPG") === "shots/cat.final.txt");
 * ```
 */
export function sidecarPath(imagePath: string): string {
  const ext = extname(imagePath);
  return (ext === "" ? imagePath : imagePath.slice(0, -ext.length)) + ".txt";
}
