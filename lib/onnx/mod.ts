/**
 * ONNX model building and running: a graph builder, ModelProto writing with external data, and
 * the onnxruntime-node session factory. Knows nothing about diffusion.
 *
 * @module
 */
export * from "./graph.ts";
export * from "./model_file.ts";
export * from "./session.ts";
export * from "./threads.ts";
export { decodeModelProto, encodeModelProto } from "./proto.ts";
export type { ModelMessage } from "./proto.ts";
export * from "./cache.ts";
export * from "./tensor_sources.ts";
export * from "./weight_ledger.ts";
export * from "./profile.ts";
