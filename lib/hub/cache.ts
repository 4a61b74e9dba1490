/**
 * Where downloaded models live: `$DENOISE_HOME`, else `$XDG_CACHE_HOME/denoise`, else
 * `~/.cache/denoise`. Library code receives the environment as a plain object.
 *
 * @module
 */
import { join } from "node:path";
import { type LockedModel, sourceRevision } from "./lock.ts";

/** The environment variables the cache location depends on. */
export interface CacheEnv {
  DENOISE_HOME?: string | undefined;
  XDG_CACHE_HOME?: string | undefined;
  HOME?: string | undefined;
}

/** The denoise cache root for an environment. */
export function cacheRoot(env: CacheEnv): string {
  if (env.DENOISE_HOME) return env.DENOISE_HOME;
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "denoise");
  if (env.HOME) return join(env.HOME, ".cache", "denoise");
  throw new RangeError(
    "Cannot find a cache folder: none of DENOISE_HOME, XDG_CACHE_HOME or HOME is set",
  );
}

/**
 * The folder a locked model is placed in: `<root>/models/<alias>/<revision>` (a GitHub release's
 * tag for release assets).
 */
export function modelDir(root: string, alias: string, model: LockedModel): string {
  return join(root, "models", alias, sourceRevision(model));
}
