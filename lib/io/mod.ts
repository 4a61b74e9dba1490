/**
 * Standard input and output for denoise: reading whole inputs, content sniffing, atomic file
 * writes, stdout with terminal protection, and progress reporting.
 *
 * @module
 */
export * from "./input.ts";
export * from "./output.ts";
export * from "./progress.ts";
export * from "./sniff.ts";
