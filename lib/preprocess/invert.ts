/**
 * The `invert` preprocessor: 255 minus every pixel, as the A1111 ControlNet extension's `invert`
 * module, to turn black-on-white line drawings into the white-on-black lines the scribble, line
 * art and canny nets expect.
 *
 * @module
 */
import type { RawImage } from "../image/codec.ts";
import { type RgbImage, toRgb } from "../image/gray.ts";
import { resolveOptions } from "./options.ts";
import { asPromise, type Preprocessor } from "./preprocessor.ts";

/**
 * `255 - HWC3(image)`: the image as RGB, each value inverted.
 *
 * @example
 * ```ts
 * import { invertControl } from "./invert.ts";
 * const out = invertControl({ width: 1, height: 1, channels: 1, data: Uint8Array.of(10) });
 * console.assert(out.data.join() === "245,245,245");
 * ```
 */
export function invertControl(image: RawImage): RgbImage {
  const rgb = toRgb(image);
  for (let i = 0; i < rgb.data.length; i++) rgb.data[i] = 255 - rgb.data[i]!;
  return rgb;
}

/** The invert preprocessor for the registry. */
export const invertPreprocessor: Preprocessor = {
  kind: "invert",
  summary: "255 minus each pixel: black-on-white drawings to white-on-black lines",
  reference: "A1111 sd-webui-controlnet `invert` (255 - HWC3(img))",
  options: [],
  run: (image, options) =>
    asPromise(() => {
      resolveOptions("invert", [], options);
      return invertControl(image);
    }),
};
