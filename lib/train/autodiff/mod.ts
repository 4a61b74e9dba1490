/**
 * Reverse-mode differentiation of ONNX graphs built by lib/onnx GraphBuilder: static shape
 * inference, one VJP rule per op family, and the gradient graph.
 *
 * @module
 */
export { defaultGradientName, gradientGraph, type GradientGraphOptions } from "./gradient_graph.ts";
export { liveNodes, mergeGraphs, type MergeGraphsOptions } from "./merge_graphs.ts";
export { inferShapes, type ShapeTable, type TensorInfo } from "./shape_inference.ts";
export { type VjpContext, type VjpRule } from "./vjp.ts";
export { VJP_RULES } from "./vjp_rules.ts";
export { clipTextSegments, Recomputation, type SegmentOf, unetSegments } from "./recompute.ts";
