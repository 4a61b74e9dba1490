/**
 * Loaders and name tables below the pipelines: opening Diffusers folders, the LDM <-> Diffusers
 * key tables, and the component engine that turns a config plus weights into a cached ONNX
 * session. Any tool (diffusion, upscaling, captioning, training) uses these without going
 * through lib/pipeline.
 *
 * @module
 */
export * from "./diffusers_folder.ts";
export * from "./engine.ts";
export * from "./key_map.ts";
