/**
 * Training latents: a preprocessed image through the VAE encoder, one sample of its posterior
 * (`vae.encode(pixels).latent_dist.sample()` with a seeded torch-compatible draw) times the VAE's
 * `scaling_factor`, as train_text_to_image_lora.py computes them. The training loop encodes each
 * image once (and its mirror image when flips are on) and keeps the result.
 *
 * @module
 */
import { buildVaeEncoder, latentDistribution } from "../models/vae.ts";
import type { ComponentFiles } from "../model_io/diffusers_folder.ts";
import { type EngineOptions, openComponent } from "../model_io/engine.ts";
import type { VaeConfig } from "../models/config.ts";
import { hostTensor, type OnnxSession } from "../onnx/session.ts";
import { TorchCpuGenerator } from "../rng/torch_cpu_generator.ts";

const f32 = Math.fround;

/**
 * The VAE encoder of a model, opened once.
 *
 * @example
 * ```ts ignore
 * const encoder = await LatentEncoder.open(model.vae, { cacheDir });
 * const latents = await encoder.encode(pixelsToTensor(image), 512, 512, 42n);
 * await encoder.release();
 * ```
 */
export class LatentEncoder {
  readonly vae: ComponentFiles<VaeConfig>;
  #session: OnnxSession;

  private constructor(vae: ComponentFiles<VaeConfig>, session: OnnxSession) {
    this.vae = vae;
    this.#session = session;
  }

  /**
   * Builds (or reuses from the cache) the float32 VAE encoder graph.
   *
   * @example
   * ```ts ignore
   * const encoder = await LatentEncoder.open(model.vae, { cacheDir });
   * const latents = await encoder.encode(pixels, 512, 512, 42n);
   * ```
   */
  static async open(
    vae: ComponentFiles<VaeConfig>,
    options: EngineOptions,
  ): Promise<LatentEncoder> {
    const session = await openComponent({
      kind: "vae_encoder",
      weights: vae.weights,
      config: vae.rawConfig,
      build: (sources) => buildVaeEncoder(vae.config, sources),
    }, options);
    return new LatentEncoder(vae, session);
  }

  /**
   * `[1, 4, height/8, width/8]` training latents of a `[3, height, width]` tensor in [-1, 1]:
   * `(mean + std * randn) * scaling_factor`, with the noise `torch.randn` of a generator seeded
   * `seed`.
   */
  async encode(
    pixels: Float32Array,
    width: number,
    height: number,
    seed: bigint,
  ): Promise<Float32Array> {
    const out = await this.#session.run({
      sample: hostTensor("float32", pixels, [1, 3, height, width]),
    }, ["latent_parameters"]);
    const moments = out.latent_parameters!;
    const dims = moments.dims as [number, number, number, number];
    const dist = latentDistribution({ data: moments.data as Float32Array, dims });
    const noise = new TorchCpuGenerator(seed).randn([...dist.mean.dims]);
    const s = f32(this.vae.config.scalingFactor);
    const latents = new Float32Array(noise.length);
    for (let i = 0; i < latents.length; i++) {
      // DiagonalGaussianDistribution.sample: mean + std * randn, then * scaling_factor.
      const x = f32(dist.mean.data[i]! + f32(dist.std.data[i]! * noise[i]!));
      latents[i] = f32(x * s);
    }
    return latents;
  }

  /** Frees the session. */
  async release(): Promise<void> {
    await this.#session.release();
  }
}
