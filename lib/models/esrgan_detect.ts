/**
 * Recognising an ESRGAN-family network from its weights alone (names and shapes, never values,
 * as sd.cpp's `detect_from_weights`): architecture, blocks, features, growth channels, upsample
 * stages, pixel-unshuffle factor, scale, channels. Names must already be Real-ESRGAN names
 * ({@linkcode normalizeUpscalerKeys}).
 *
 * @module
 */
import { checkUpscalerConfig, type UpscalerConfig } from "./esrgan.ts";

/** Options of {@linkcode detectUpscalerConfig}. */
export interface DetectUpscalerOptions {
  /** Names the file in error messages. */
  source?: string;
}

function notAnUpscaler(
  shapes: ReadonlyMap<string, readonly number[]>,
  source: string | undefined,
  why: string,
): TypeError {
  const names = [...shapes.keys()];
  const found = names.length === 0
    ? "no tensors"
    : `${names.length} tensors such as ${
      names.slice(0, 4).map((n) => `"${n}" [${shapes.get(n)!.join(", ")}]`).join(", ")
    }`;
  return new TypeError(
    `${source === undefined ? "The weights are" : `"${source}" is`} not an ESRGAN-family ` +
      `upscaler (RRDBNet or SRVGGNetCompact): ${why}; found ${found}. Expected the Real-ESRGAN ` +
      `names ("conv_first.weight", "body.0.rdb1.conv1.weight" or SRVGGNetCompact's ` +
      `"body.0.weight"), the ESRGAN names ("model.0.weight", "model.1.sub.0.RDB1.conv1.0.weight") ` +
      `or BSRGAN's ("RRDB_trunk.0.RDB1.conv1.weight")`,
  );
}

/** The indices captured by `pattern` (group 1) over the names, sorted. */
function indices(names: Iterable<string>, pattern: RegExp): number[] {
  const out: number[] = [];
  for (const name of names) {
    const m = pattern.exec(name);
    if (m !== null) out.push(Number(m[1]));
  }
  return out.sort((a, b) => a - b);
}

/**
 * The config of the network whose weights have these (Real-ESRGAN) names and shapes. Throws a
 * TypeError saying what was found when they are not an RRDBNet or SRVGGNetCompact.
 *
 * @example
 * ```ts
 * import { detectUpscalerConfig } from "./esrgan_detect.ts";
 * import { rrdbNetConfig, upscalerParameterShapes } from "./esrgan.ts";
 * const config = detectUpscalerConfig(upscalerParameterShapes(rrdbNetConfig({ scale: 2 })));
 * console.assert(config.architecture === "RRDBNet" && config.scale === 2);
 * ```
 */
export function detectUpscalerConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: DetectUpscalerOptions = {},
): UpscalerConfig {
  const shape = (name: string, rank: number): readonly number[] | undefined => {
    const s = shapes.get(name);
    return s !== undefined && s.length === rank ? s : undefined;
  };
  const fail = (why: string) => notAnUpscaler(shapes, options.source, why);

  const first = shape("conv_first.weight", 4);
  const dense = shape("body.0.rdb1.conv1.weight", 4);
  if (first !== undefined || dense !== undefined) {
    // RRDBNet
    const last = shape("conv_last.weight", 4);
    if (first === undefined || dense === undefined || last === undefined) {
      throw fail(
        `RRDBNet needs "conv_first.weight", "body.0.rdb1.conv1.weight" and "conv_last.weight" ` +
          `(4-D); some are missing`,
      );
    }
    const features = first[0]!;
    const stored = first[1]!;
    const outChannels = last[0]!;
    const blocks = indices(shapes.keys(), /^body\.(\d+)\.rdb1\.conv1\.weight$/).length;
    const ups = indices(shapes.keys(), /^conv_up(\d+)\.weight$/);
    if (ups.some((u, i) => u !== i + 1)) {
      throw fail(`the upsample convs are numbered ${ups.join(", ")}, not 1, 2, ...`);
    }
    // Real-ESRGAN x2 / x1 pixel-unshuffle the input: conv_first sees 4x or 16x the channels.
    const unshuffle = stored === outChannels * 16 ? 4 : stored === outChannels * 4 ? 2 : 1;
    const scale = 2 ** ups.length / unshuffle;
    if (!Number.isInteger(scale)) {
      throw fail(
        `${ups.length} upsample stage(s) after a pixel-unshuffle by ${unshuffle} would shrink ` +
          `the image`,
      );
    }
    const config: UpscalerConfig = {
      architecture: "RRDBNet",
      inChannels: stored / (unshuffle * unshuffle),
      outChannels,
      features,
      blocks,
      growthChannels: dense[0]!,
      upsamples: ups.length,
      unshuffle,
      scale,
    };
    checkUpscalerConfig(config);
    return config;
  }

  const body0 = shape("body.0.weight", 4);
  if (body0 !== undefined) {
    // SRVGGNetCompact: convs at even indices, PReLU slopes [nf] at odd ones.
    const convIndices = indices(shapes.keys(), /^body\.(\d+)\.weight$/)
      .filter((i) => shapes.get(`body.${i}.weight`)!.length === 4);
    const lastIndex = convIndices[convIndices.length - 1]!;
    const convs = (lastIndex - 2) / 2;
    if (!Number.isInteger(convs) || convs < 0) {
      throw fail(`SRVGGNetCompact's last conv must be body.<2n+2>, found body.${lastIndex}`);
    }
    const features = body0[0]!;
    const inChannels = body0[1]!;
    const lastOut = shapes.get(`body.${lastIndex}.weight`)![0]!;
    const scale = Math.round(Math.sqrt(lastOut / inChannels));
    if (scale < 1 || scale * scale * inChannels !== lastOut) {
      throw fail(
        `SRVGGNetCompact's last conv has ${lastOut} outputs, not ${inChannels} x scale²`,
      );
    }
    const prelu = shapes.get("body.1.weight");
    if (prelu === undefined || prelu.length !== 1 || prelu[0] !== features) {
      throw fail(
        `this SRVGGNetCompact has no PReLU slopes ("body.1.weight" [${features}]); its ReLU and ` +
          `LeakyReLU variants cannot be told apart from the weights`,
      );
    }
    const config: UpscalerConfig = {
      architecture: "SRVGGNetCompact",
      inChannels,
      outChannels: inChannels,
      features,
      convs,
      scale,
      activation: "prelu",
    };
    checkUpscalerConfig(config);
    return config;
  }
  throw fail(`no "conv_first.weight", "body.0.rdb1.conv1.weight" or "body.0.weight"`);
}
