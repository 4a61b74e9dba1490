/**
 * Training datasets from folders, in the two layouts LoRA trainers read:
 *
 * - **kohya-ss** (sd-scripts' DreamBooth layout): images with same-name `.txt` (or `.caption`)
 *   captions, either directly in the folder or in `N_name` subfolders whose images repeat N times
 *   per epoch; an image without a caption file is captioned with its folder's class tokens
 *   (`10_sks dog` -> "sks dog"). The first non-empty line of a caption file is the caption.
 * - **imagefolder** (Hugging Face `datasets`, what Diffusers' train_text_to_image_lora.py and
 *   the book read): a `metadata.jsonl` with one `{"file_name": ..., "text": ...}` per line, in
 *   the folder or in its `train/` split.
 *
 * Scanning reads names and captions only; images are decoded later (one that cannot be decoded
 * is skipped then, with a warning). Items are sorted by path so a dataset always has one order.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { basename, extname, join, relative } from "node:path";
import { InputError } from "../errors.ts";

/** Image extensions a dataset may hold (lower case). */
export const IMAGE_EXTENSIONS: ReadonlySet<string> = new Set([
  ".png",
  ".jpg",
  ".jpeg",
  ".webp",
  ".gif",
  ".avif",
  ".tif",
  ".tiff",
]);

const CAPTION_EXTENSIONS = [".txt", ".caption"];

/** One training image. */
export interface DatasetItem {
  /** The image file. */
  image: string;
  /** Its caption. */
  caption: string;
  /** Times it is seen per epoch (kohya `N_` folders; 1 otherwise). */
  repeats: number;
  /** The subset (folder) it belongs to, as kohya names it in `ss_tag_frequency`. */
  subset: string;
}

/** One subset (kohya folder) of a dataset. */
export interface DatasetSubset {
  name: string;
  repeats: number;
  /** Images in it. */
  images: number;
}

/** A scanned dataset. */
export interface Dataset {
  /** The folder given. */
  root: string;
  layout: "kohya" | "imagefolder";
  items: DatasetItem[];
  subsets: DatasetSubset[];
  /** Things a user should hear about (caption files without an image, empty captions...). */
  warnings: string[];
}

async function listDir(dir: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new InputError(`The dataset folder "${dir}" does not exist`, {
        hint: "pass a folder of images with .txt captions, or one with a metadata.jsonl",
      });
    }
    if (error instanceof Deno.errors.NotADirectory) {
      throw new InputError(`The dataset "${dir}" is a file, not a folder`, {
        hint: "pass a folder of images with .txt captions, or one with a metadata.jsonl",
      });
    }
    throw error;
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function isImage(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase());
}

async function readCaption(path: string): Promise<string | undefined> {
  const text = await Deno.readTextFile(path);
  return text.split(/\r?\n/).map((l) => l.trim()).find((l) => l !== "");
}

/** The images and captions of one kohya folder. */
async function kohyaFolder(
  root: string,
  dir: string,
  subset: string,
  repeats: number,
  classTokens: string | undefined,
  warnings: string[],
): Promise<DatasetItem[]> {
  const entries = (await listDir(dir)).filter((e) => e.isFile);
  const images = entries.filter((e) => isImage(e.name)).map((e) => e.name);
  const imageStems = new Set(images.map((n) => n.slice(0, -extname(n).length)));
  for (const e of entries) {
    const ext = extname(e.name).toLowerCase();
    if (CAPTION_EXTENSIONS.includes(ext) && !imageStems.has(e.name.slice(0, -ext.length))) {
      warnings.push(`${relative(root, join(dir, e.name))}: caption file with no image; ignored`);
    }
  }
  const items: DatasetItem[] = [];
  for (const name of images) {
    const stem = name.slice(0, -extname(name).length);
    let caption: string | undefined;
    for (const ext of CAPTION_EXTENSIONS) {
      const path = join(dir, stem + ext);
      try {
        caption = await readCaption(path);
        if (caption === undefined) warnings.push(`${relative(root, path)}: empty caption file`);
        break;
      } catch (error) {
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
    if (caption === undefined) {
      if (classTokens === undefined) {
        warnings.push(`${relative(root, join(dir, name))}: no caption; trained with an empty one`);
      }
      caption = classTokens ?? "";
    }
    items.push({ image: join(dir, name), caption, repeats, subset });
  }
  return items;
}

async function imageFolder(
  root: string,
  metadata: string,
  warnings: string[],
): Promise<DatasetItem[]> {
  const dir = join(metadata, "..");
  const text = await Deno.readTextFile(metadata);
  const items: DatasetItem[] = [];
  const seen = new Set<string>();
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      throw new InputError(`${relative(root, metadata)} line ${i + 1} is not valid JSON`, {
        hint: 'write one {"file_name": "a.png", "text": "a caption"} object per line',
      });
    }
    const r = row as Record<string, unknown>;
    const file = r.file_name;
    const caption = typeof r.text === "string" ? r.text : r.caption;
    if (typeof file !== "string" || typeof caption !== "string") {
      throw new InputError(
        `${relative(root, metadata)} line ${i + 1} has no "file_name" and "text" strings`,
        { hint: 'write one {"file_name": "a.png", "text": "a caption"} object per line' },
      );
    }
    const image = join(dir, file);
    try {
      const stat = await Deno.stat(image);
      if (!stat.isFile) throw new Deno.errors.NotFound();
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
      warnings.push(`${relative(root, metadata)} line ${i + 1}: "${file}" does not exist; skipped`);
      continue;
    }
    seen.add(image);
    items.push({ image, caption: caption.trim(), repeats: 1, subset: basename(root) });
  }
  for (const e of await listDir(dir)) {
    if (e.isFile && isImage(e.name) && !seen.has(join(dir, e.name))) {
      warnings.push(`${relative(root, join(dir, e.name))}: not in metadata.jsonl; ignored`);
    }
  }
  return items.sort((a, b) => (a.image < b.image ? -1 : 1));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Scans a dataset folder (see the module doc). Throws an {@linkcode InputError} for a missing or
 * empty dataset.
 *
 * @example
 * ```ts
 * import { join } from "node:path";
 * import { scanDataset } from "./dataset.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.mkdir(join(dir, "3_sks dog"));
 * await Deno.writeFile(join(dir, "3_sks dog", "a.png"), new Uint8Array(1));
 * const ds = await scanDataset(dir);
 * console.assert(ds.items[0]!.caption === "sks dog" && ds.items[0]!.repeats === 3);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function scanDataset(root: string): Promise<Dataset> {
  const warnings: string[] = [];
  for (const candidate of [join(root, "metadata.jsonl"), join(root, "train", "metadata.jsonl")]) {
    if (await exists(candidate)) {
      const items = await imageFolder(root, candidate, warnings);
      return finish(root, "imagefolder", items, warnings);
    }
  }
  const entries = await listDir(root);
  const items: DatasetItem[] = await kohyaFolder(
    root,
    root,
    basename(root),
    1,
    undefined,
    warnings,
  );
  for (const e of entries) {
    if (!e.isDirectory) continue;
    const m = /^(\d+)_(.*)$/.exec(e.name);
    if (m === null) {
      warnings.push(`${e.name}/: not an N_name repeat folder; ignored (kohya layout)`);
      continue;
    }
    const repeats = Number(m[1]);
    if (repeats < 1) {
      warnings.push(`${e.name}/: repeats must be at least 1; ignored`);
      continue;
    }
    const tokens = m[2]!.trim();
    items.push(
      ...await kohyaFolder(
        root,
        join(root, e.name),
        e.name,
        repeats,
        tokens || undefined,
        warnings,
      ),
    );
  }
  return finish(root, "kohya", items, warnings);
}

function finish(
  root: string,
  layout: Dataset["layout"],
  items: DatasetItem[],
  warnings: string[],
): Dataset {
  if (items.length === 0) {
    throw new InputError(`The dataset "${root}" has no images`, {
      hint: layout === "imagefolder"
        ? "list the images in metadata.jsonl"
        : "put .png/.jpg/.webp images (with same-name .txt captions) in it or in N_name folders",
    });
  }
  const subsets = new Map<string, DatasetSubset>();
  for (const it of items) {
    const s = subsets.get(it.subset) ?? { name: it.subset, repeats: it.repeats, images: 0 };
    s.images++;
    subsets.set(it.subset, s);
  }
  return { root, layout, items, subsets: [...subsets.values()], warnings };
}

/**
 * kohya's `ss_tag_frequency`: per subset, how many captions hold each comma-separated tag.
 *
 * @example
 * ```ts
 * import { tagFrequency } from "./dataset.ts";
 * const f = tagFrequency([{ image: "a", caption: "cat, red", repeats: 1, subset: "1_x" },
 *   { image: "b", caption: "cat", repeats: 1, subset: "1_x" }]);
 * console.assert(f["1_x"]!["cat"] === 2 && f["1_x"]!["red"] === 1);
 * ```
 */
export function tagFrequency(
  items: readonly DatasetItem[],
): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (const it of items) {
    const counts = out[it.subset] ??= {};
    for (const raw of it.caption.split(",")) {
      const tag = raw.trim();
      if (tag !== "") counts[tag] = (counts[tag] ?? 0) + 1;
    }
  }
  return out;
}

/**
 * A fingerprint of the dataset's content as training sees it (relative paths, sizes, captions,
 * repeats), so a resumed run can tell it is training on the same data.
 *
 * @example
 * ```ts ignore
 * const id = await datasetFingerprint(await scanDataset("photos/")); // 16 hex digits
 * ```
 */
export async function datasetFingerprint(dataset: Dataset): Promise<string> {
  const hash = createHash("sha256");
  for (const it of dataset.items) {
    const size = (await Deno.stat(it.image)).size;
    hash.update(JSON.stringify([relative(dataset.root, it.image), size, it.caption, it.repeats]));
  }
  return hash.digest("hex").slice(0, 16);
}
