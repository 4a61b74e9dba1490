/**
 * Latent Consistency Models with a guidance embedding (UNet config `time_cond_proj_dim`, e.g.
 * SimianLuo/LCM_Dreamshaper_v7): the guidance scale is not applied as classifier-free guidance
 * but embedded and fed to the UNet as `timestep_cond`, as Diffusers 0.27's
 * `LatentConsistencyModelPipeline` / `LatentConsistencyModelImg2ImgPipeline` do
 * (src/diffusers/pipelines/latent_consistency_models/pipeline_latent_consistency_text2img.py,
 * `get_guidance_scale_embedding`, after google-research/vdm model_vdm.py).
 *
 * @module
 */

const f32 = Math.fround;

/**
 * The guidance scale embedding `[N, dim]`, one row per image, in float32 as torch computes it:
 * `w = (scale - 1) * 1000` (the Imagen CFG formulation shifted to LCM's), then
 * `[sin(w f_j), cos(w f_j)]` with `f_j = exp(-j ln(10000) / (dim/2 - 1))`, and a zero column
 * when `dim` is odd.
 *
 * @example
 * ```ts
 * import { guidanceScaleEmbedding } from "./lcm.ts";
 * const emb = guidanceScaleEmbedding([8.5, 8.5], 256); // [2, 256]
 * console.assert(emb.length === 512);
 * ```
 */
export function guidanceScaleEmbedding(
  guidanceScales: ArrayLike<number>,
  dim: number,
): Float32Array {
  if (!Number.isInteger(dim) || dim < 4) {
    throw new RangeError(
      `Cannot embed the guidance scale in ${dim} dimensions: time_cond_proj_dim must be an ` +
        `integer of at least 4`,
    );
  }
  const half = Math.floor(dim / 2);
  // torch: log(tensor(10000.)) / (half_dim - 1), then exp(arange(half_dim) * -emb), in float32.
  const step = f32(f32(Math.log(10000)) / (half - 1));
  const freqs = Float32Array.from({ length: half }, (_, j) => f32(Math.exp(f32(j * -step))));
  const out = new Float32Array(guidanceScales.length * dim);
  for (let k = 0; k < guidanceScales.length; k++) {
    const scale = guidanceScales[k]!;
    if (!Number.isFinite(scale)) {
      throw new RangeError(`Cannot embed the guidance scale ${scale}: it must be a finite number`);
    }
    // torch.tensor(guidance_scale - 1) is float32; `w * 1000.0` stays float32.
    const w = f32(f32(scale - 1) * 1000);
    const row = k * dim;
    for (let j = 0; j < half; j++) {
      const arg = f32(w * freqs[j]!);
      out[row + j] = Math.sin(arg);
      out[row + half + j] = Math.cos(arg);
    }
    // Odd dim: F.pad(emb, (0, 1)) leaves the last column zero.
  }
  return out;
}
