/**
 * Valid inputs the fuzzers start from: files made here (so the suite runs without ../shared),
 * plus the real files of ../shared/fixtures/real when present.
 *
 * @module
 */
import { zipSync } from "fflate";
import { encodeImage } from "../../lib/image/codec.ts";
import { encodeUserComment } from "../../lib/meta/exif.ts";
import { makePng, textData } from "../../lib/meta/testing.ts";
import { writeMetadata } from "../../lib/meta/write.ts";
import { encodeSafetensors } from "../../lib/weights/safetensors.ts";
import { hasShared, sharedPath } from "../shared.ts";

const enc = new TextEncoder();

/** Real fixture files under ../shared/fixtures/real/<dir> whose names match, read. */
export function realFiles(dir: string, pattern: RegExp, maxBytes = 3_000_000): Uint8Array[] {
  if (!hasShared) return [];
  const root = sharedPath(`fixtures/real/${dir}`);
  const out: Uint8Array[] = [];
  for (const entry of [...Deno.readDirSync(root)].sort((a, b) => a.name < b.name ? -1 : 1)) {
    if (!entry.isFile || !pattern.test(entry.name)) continue;
    const bytes = Deno.readFileSync(`${root}/${entry.name}`);
    if (bytes.length <= maxBytes) out.push(bytes);
  }
  return out;
}

const INFOTEXT = "a fox, (snow:1.2), [cat:dog:0.5] <lora:foxy:0.8>\n" +
  "Negative prompt: blurry\n" +
  'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, Lora hashes: "foxy: 0123", ' +
  'ControlNet 0: "Module: canny, Weight: 1.0"';
const JOB = JSON.stringify({
  command: "generate",
  version: 1,
  prompt: "a fox",
  steps: 20,
  seed: 7,
  scheduler: { name: "euler", config: { a: [1, 2, { b: null }] } },
});
const COMFY = JSON.stringify({ "3": { class_type: "KSampler", inputs: { seed: 5, steps: NaN } } })
  .replace("null", "NaN");

/** A little-endian TIFF with an EXIF IFD holding a UserComment and an ImageDescription. */
function exifTiff(): Uint8Array {
  const comment = encodeUserComment(INFOTEXT);
  const description = enc.encode('workflow:{"nodes":[]}\0');
  // Header (8) + IFD0 with 2 entries (2 + 24 + 4) + EXIF IFD with 1 entry (2 + 12 + 4) + data.
  const ifd0 = 8;
  const exifIfd = ifd0 + 2 + 2 * 12 + 4;
  const descAt = exifIfd + 2 + 12 + 4;
  const commentAt = descAt + description.length;
  const out = new Uint8Array(commentAt + comment.length);
  const v = new DataView(out.buffer);
  out.set([0x49, 0x49, 42, 0]);
  v.setUint32(4, ifd0, true);
  v.setUint16(ifd0, 2, true);
  // ImageDescription (0x010e), ASCII
  v.setUint16(ifd0 + 2, 0x010e, true);
  v.setUint16(ifd0 + 4, 2, true);
  v.setUint32(ifd0 + 6, description.length, true);
  v.setUint32(ifd0 + 10, descAt, true);
  // ExifIFD pointer (0x8769), LONG
  v.setUint16(ifd0 + 14, 0x8769, true);
  v.setUint16(ifd0 + 16, 4, true);
  v.setUint32(ifd0 + 18, 1, true);
  v.setUint32(ifd0 + 22, exifIfd, true);
  v.setUint32(ifd0 + 26, 0, true);
  v.setUint16(exifIfd, 1, true);
  // UserComment (0x9286), UNDEFINED
  v.setUint16(exifIfd + 2, 0x9286, true);
  v.setUint16(exifIfd + 4, 7, true);
  v.setUint32(exifIfd + 6, comment.length, true);
  v.setUint32(exifIfd + 10, commentAt, true);
  v.setUint32(exifIfd + 14, 0, true);
  out.set(description, descAt);
  out.set(comment, commentAt);
  return out;
}

/** PNG files with every kind of text chunk, an eXIf chunk, and A1111/ComfyUI/denoise content. */
export function pngSeeds(): Uint8Array[] {
  const withExif = makePng([["eXIf", exifTiff()]], { idatParts: 3 });
  return [
    makePng([["tEXt", textData("parameters", INFOTEXT)]]),
    writeMetadata(withExif, { set: { prompt: COMFY, workflow: '{"nodes":[{"id":1}]}' } }, {
      compress: true,
    }),
    writeMetadata(withExif, { set: { denoise: JOB, "Title": "ünï" } }),
    makePng([], { width: 1, height: 1 }),
    ...realFiles("a1111", /\.png$/, 600_000),
    ...realFiles("comfyui", /\.png$/, 400_000),
    ...realFiles("other_tools", /\.png$/, 300_000),
  ];
}

/** JPEG and WebP files with EXIF (UserComment), XMP and comments, and a GIF header. */
export async function jpegWebpGifSeeds(): Promise<Uint8Array[]> {
  const image = { width: 8, height: 8, channels: 3 as const, data: new Uint8Array(192).fill(128) };
  const set = { parameters: INFOTEXT };
  const jpeg = writeMetadata(await encodeImage(image, "jpeg"), { set });
  const webp = writeMetadata(await encodeImage(image, "webp"), { set });
  const gif = Uint8Array.from([...enc.encode("GIF89a"), 8, 0, 8, 0, 0, 0, 0, 0x3b]);
  return [
    jpeg,
    webp,
    gif,
    ...realFiles("a1111", /\.(jpg|webp)$/),
    ...realFiles("other_tools", /\.jpg$/),
    ...realFiles("comfyui", /\.webp$/, 1_200_000),
  ];
}

/** safetensors files: several dtypes, metadata, an empty one, real LoRA and TI files. */
export function safetensorsSeeds(): Uint8Array[] {
  return [
    encodeSafetensors({
      "a.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      "b.bias": { dtype: "F16", shape: [3], data: new Float32Array([0.5, -1, 2]) },
      "c": { dtype: "BF16", shape: [1, 1, 2], data: new Float32Array([3, 4]) },
      "d": { dtype: "I64", shape: [2], data: new Uint8Array(16) },
      "e": { dtype: "U8", shape: [0], data: new Uint8Array(0) },
    }, { format: "pt", note: "ünïcode" }),
    encodeSafetensors({}),
    ...realFiles("embeddings", /\.safetensors$/),
    ...realFiles("lora", /\.safetensors$/),
  ];
}

/** Pickle bytes as CPython 3.11 writes them (see lib/weights/pickle_test.ts), protocols 0-5. */
export const PLAIN_PICKLES_HEX: readonly string[] = [
  "286470300a56610a70310a286c70320a49310a61492d320a61493330300a614937303030300a614c2d313039393531313632373737364c0a614c313138303539313632303731373431313330333432344c0a6146312e350a6156e95c75303030610a70330a61635f636f646563730a656e636f64650a70340a28565c7530303030010a70350a566c6174696e310a70360a7470370a5270380a61284930310a4e4930300a7470390a61635f5f6275696c74696e5f5f0a7365740a7031300a28286c7031310a49330a61747031320a527031330a61635f5f6275696c74696e5f5f0a66726f7a656e7365740a7031340a28286c7031350a49340a61747031360a527031370a617356620a7031380a28747356630a7031390a567878780a7032300a732e",
  "80027d71002858010000006171015d7102284b014afeffffff4d2c014a701101008a060000000000ff8a09000000000000000040473ff80000000000005803000000c3a90a7103635f636f646563730a656e636f64650a710458020000000001710558060000006c6174696e317106867107527108884e89877109635f5f6275696c74696e5f5f0a7365740a710a5d710b4b036185710c52710d635f5f6275696c74696e5f5f0a66726f7a656e7365740a710e5d710f4b046185711052711165580100000062711229580100000063711358030000007878787114752e",
  "80049562000000000000007d94288c0161945d94284b014afeffffff4d2c014a701101008a060000000000ff8a09000000000000000040473ff80000000000008c03c3a90a944302000194884e8987948f94284b0390284b049194658c016294298c0163948c0378787894752e",
];

/** Hex to bytes. */
export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

function pk(...parts: Array<string | number[]>): Uint8Array {
  const chunks = parts.map((p) =>
    typeof p === "string" ? Uint8Array.from(p, (c) => c.charCodeAt(0)) : Uint8Array.from(p)
  );
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function sbu(text: string): number[] {
  return [0x8c, text.length, ...enc.encode(text)];
}

/** The protocol-2 pickle torch.save writes for one tensor (lib/weights/torch_zip_test.ts). */
function tensorPickle(type: string, key: string, size: number[]): Array<string | number[]> {
  const ints = (xs: number[]) =>
    xs.flatMap((x) => [0x4a, ...new Uint8Array(new Int32Array([x]).buffer)]);
  const numel = size.reduce((a, b) => a * b, 1);
  const stride = size.map((_, i) => size.slice(i + 1).reduce((a, b) => a * b, 1));
  return [
    "ctorch._utils\n_rebuild_tensor_v2\n(",
    "(",
    sbu("storage"),
    `ctorch\n${type}\n`,
    sbu(key),
    sbu("cpu"),
    ints([numel]),
    "tQ",
    ints([0]),
    "(",
    ints(size),
    "t(",
    ints(stride),
    "t",
    [0x89],
    "ccollections\nOrderedDict\n)R",
    "tR",
  ];
}

/** Pickles: plain CPython data and torch.save tensor pickles. */
export function pickleSeeds(): Uint8Array[] {
  return [
    ...PLAIN_PICKLES_HEX.map(fromHex),
    pk([0x80, 2], "}(", sbu("w"), ...tensorPickle("FloatStorage", "0", [2, 3]), "u."),
  ];
}

function torchZip(pickle: Uint8Array, storages: Uint8Array[], level: 0 | 6): Uint8Array {
  const files: Record<string, Uint8Array> = {
    "archive/data.pkl": pickle,
    "archive/version": enc.encode("3\n"),
    "archive/byteorder": enc.encode("little"),
  };
  storages.forEach((s, i) => files[`archive/data/${i}`] = s);
  return zipSync(files, { level });
}

/** torch.save archives: a state dict, an A1111 embedding, stored and deflated; real files. */
export function torchZipSeeds(): Uint8Array[] {
  const stateDict = pk(
    [0x80, 2],
    "}(",
    sbu("state_dict"),
    "}(",
    sbu("w"),
    ...tensorPickle("FloatStorage", "0", [2, 3]),
    sbu("h"),
    ...tensorPickle("HalfStorage", "1", [2]),
    "u",
    sbu("epoch"),
    "K\x07u.",
  );
  const embedding = pk(
    [0x80, 2],
    "}(",
    sbu("string_to_param"),
    "}(",
    sbu("*"),
    ...tensorPickle("FloatStorage", "0", [2, 4]),
    "u",
    sbu("name"),
    sbu("fuzzy"),
    "u.",
  );
  const f32 = (n: number) => new Uint8Array(new Float32Array(n).fill(0.25).buffer);
  const f16 = new Uint8Array(new Uint16Array([0x3c00, 0x4000]).buffer);
  return [
    torchZip(stateDict, [f32(6), f16], 0),
    torchZip(stateDict, [f32(6), f16], 6),
    torchZip(embedding, [f32(8)], 0),
    ...realFiles("embeddings", /\.(pt|bin)$/),
    ...realFiles("pickles", /\.(pt|th)$/, 300_000),
  ];
}

/** LoRA files: kohya LoRA/LoCon, LyCORIS LoHa and LoKr, PEFT; real ones. */
export function loraSeeds(): Uint8Array[] {
  const f = (shape: number[]) => ({
    dtype: "F32" as const,
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01),
  });
  const k = "lora_unet_down_blocks_0_attentions_0_proj_in";
  const t = "lora_te_text_model_encoder_layers_0_mlp_fc1";
  return [
    encodeSafetensors({
      [`${k}.lora_down.weight`]: f([2, 8]),
      [`${k}.lora_up.weight`]: f([4, 2]),
      [`${k}.alpha`]: f([]),
      [`${t}.lora_down.weight`]: f([2, 4, 3, 3]),
      [`${t}.lora_mid.weight`]: f([2, 2, 3, 3]),
      [`${t}.lora_up.weight`]: f([4, 2, 1, 1]),
    }, { ss_network_module: "networks.lora" }),
    encodeSafetensors({
      [`${k}.hada_w1_a`]: f([4, 2]),
      [`${k}.hada_w1_b`]: f([2, 8]),
      [`${k}.hada_w2_a`]: f([4, 2]),
      [`${k}.hada_w2_b`]: f([2, 8]),
      [`${t}.lokr_w1`]: f([2, 2]),
      [`${t}.lokr_w2_a`]: f([2, 1]),
      [`${t}.lokr_w2_b`]: f([1, 4]),
      [`${t}.dora_scale`]: f([1, 8]),
    }),
    encodeSafetensors({
      "unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": f([2, 8]),
      "unet.down_blocks.0.attentions.0.proj_in.lora_B.weight": f([4, 2]),
    }),
    ...realFiles("lora", /\.safetensors$/),
  ];
}

/** Textual-inversion files: emb_params, clip_l/clip_g, {token: vectors}; real ones. */
export function embeddingSeeds(): Uint8Array[] {
  const f = (shape: number[]) => ({
    dtype: "F32" as const,
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.5),
  });
  return [
    encodeSafetensors({ emb_params: f([2, 8]) }),
    encodeSafetensors({ clip_l: f([3, 8]), clip_g: f([3, 16]) }),
    encodeSafetensors({ "<cat>": f([8]) }),
    ...torchZipSeeds().slice(2, 3),
    ...realFiles("embeddings", /./, 100_000),
  ];
}

/** Job documents: a generate Job, a `meta read` document, an A1111-only one. */
export function jobSeeds(): string[] {
  return [
    JOB,
    JSON.stringify({
      command: "generate",
      prompt: "x",
      negative: "",
      steps: 4,
      cfg: 7.5,
      seed: "18446744073709551615",
      width: 64,
      height: 64,
      sampler: "dpm++2m",
      schedule: "karras",
      hiresScale: 2,
    }),
    JSON.stringify({ format: "png", job: JSON.parse(JOB), warnings: [] }),
    JSON.stringify({
      format: "png",
      a1111: {
        prompt: "a",
        negativePrompt: "b",
        params: { Steps: "20", Seed: "5", Size: "64x64" },
        summary: { steps: 20, seed: 5, width: 64, height: 64, sampler: "Euler a" },
      },
    }),
  ];
}

/** models.lock.json texts: the project's own and a small one. */
export function lockSeeds(): string[] {
  const own = Deno.readTextFileSync(new URL("../../models.lock.json", import.meta.url));
  const small = JSON.stringify({
    version: 1,
    models: {
      tiny: {
        description: "t",
        family: "sd1",
        source: { hub: "huggingface", repo: "a/b", revision: "0".repeat(40) },
        layout: "diffusers",
        files: [{ path: "unet/config.json", size: 10, sha256: "a".repeat(64) }],
        verified: false,
      },
    },
  });
  return [own, small];
}
