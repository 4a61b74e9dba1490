/**
 * Model management: models.lock.json, the cache folder, resumable verified downloads.
 *
 * @module
 */
export * from "./cache.ts";
export * from "./download.ts";
export * from "./lock.ts";
export * from "./pull.ts";
