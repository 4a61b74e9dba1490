/**
 * The subset of onnx.proto (ModelProto and what it contains) that denoise writes, as a
 * protobufjs JSON descriptor, plus `encodeModelProto()`.
 *
 * Field numbers follow onnx/onnx.proto (https://github.com/onnx/onnx/blob/main/onnx/onnx.proto,
 * IR version 10). Only the fields we emit are declared; protobuf ignores the rest when reading.
 *
 * @module
 */
import protobuf from "protobufjs";

/** ONNX `TensorProto.DataType` codes. */
export const DataType = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
  bfloat16: 16,
} as const;

/** ONNX `AttributeProto.AttributeType` codes. */
export const AttributeType = {
  float: 1,
  int: 2,
  string: 3,
  tensor: 4,
  graph: 5,
  floats: 6,
  ints: 7,
  strings: 8,
} as const;

/** A `StringStringEntryProto`. */
export interface StringStringEntry {
  key: string;
  value: string;
}

/** A `TensorProto` as plain data: either `rawData` or `externalData` (+ `dataLocation: 1`). */
export interface TensorMessage {
  name?: string;
  dims: number[];
  dataType: number;
  rawData?: Uint8Array;
  externalData?: StringStringEntry[];
  /** 0 = DEFAULT (inline), 1 = EXTERNAL. */
  dataLocation?: number;
}

/** An `AttributeProto` as plain data. */
export interface AttributeMessage {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorMessage;
  g?: GraphMessage;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
}

/** A `NodeProto` as plain data. */
export interface NodeMessage {
  input: string[];
  output: string[];
  name?: string;
  opType: string;
  domain?: string;
  attribute?: AttributeMessage[];
}

/** A dimension of a `TensorShapeProto`: a fixed size or a named dynamic one. */
export type DimensionMessage = { dimValue: number } | { dimParam: string };

/** A `ValueInfoProto` for a tensor. */
export interface ValueInfoMessage {
  name: string;
  type: {
    tensorType: {
      elemType: number;
      shape?: { dim: DimensionMessage[] };
    };
  };
}

/** A `GraphProto` as plain data. */
export interface GraphMessage {
  name: string;
  node: NodeMessage[];
  initializer: TensorMessage[];
  input: ValueInfoMessage[];
  output: ValueInfoMessage[];
  valueInfo?: ValueInfoMessage[];
  docString?: string;
}

/** A `ModelProto` as plain data. */
export interface ModelMessage {
  irVersion: number;
  opsetImport: Array<{ domain: string; version: number }>;
  producerName: string;
  producerVersion: string;
  graph: GraphMessage;
  metadataProps?: StringStringEntry[];
  docString?: string;
}

// Field numbers: onnx/onnx.proto (messages ModelProto, GraphProto, NodeProto, AttributeProto,
// TensorProto, ValueInfoProto, TypeProto, TensorShapeProto, OperatorSetIdProto).
const descriptor = {
  nested: {
    onnx: {
      nested: {
        StringStringEntryProto: {
          fields: { key: { type: "string", id: 1 }, value: { type: "string", id: 2 } },
        },
        OperatorSetIdProto: {
          fields: { domain: { type: "string", id: 1 }, version: { type: "int64", id: 2 } },
        },
        TensorShapeProto: {
          fields: { dim: { rule: "repeated", type: "Dimension", id: 1 } },
          nested: {
            Dimension: {
              oneofs: { value: { oneof: ["dimValue", "dimParam"] } },
              fields: {
                dimValue: { type: "int64", id: 1 },
                dimParam: { type: "string", id: 2 },
                denotation: { type: "string", id: 3 },
              },
            },
          },
        },
        TypeProto: {
          oneofs: { value: { oneof: ["tensorType"] } },
          fields: { tensorType: { type: "Tensor", id: 1 }, denotation: { type: "string", id: 6 } },
          nested: {
            Tensor: {
              fields: {
                elemType: { type: "int32", id: 1 },
                shape: { type: "TensorShapeProto", id: 2 },
              },
            },
          },
        },
        ValueInfoProto: {
          fields: {
            name: { type: "string", id: 1 },
            type: { type: "TypeProto", id: 2 },
            docString: { type: "string", id: 3 },
          },
        },
        TensorProto: {
          fields: {
            dims: { rule: "repeated", type: "int64", id: 1 },
            dataType: { type: "int32", id: 2 },
            name: { type: "string", id: 8 },
            rawData: { type: "bytes", id: 9 },
            docString: { type: "string", id: 12 },
            externalData: { rule: "repeated", type: "StringStringEntryProto", id: 13 },
            dataLocation: { type: "int32", id: 14 },
          },
        },
        AttributeProto: {
          fields: {
            name: { type: "string", id: 1 },
            f: { type: "float", id: 2 },
            i: { type: "int64", id: 3 },
            s: { type: "bytes", id: 4 },
            t: { type: "TensorProto", id: 5 },
            g: { type: "GraphProto", id: 6 },
            floats: { rule: "repeated", type: "float", id: 7 },
            ints: { rule: "repeated", type: "int64", id: 8 },
            strings: { rule: "repeated", type: "bytes", id: 9 },
            docString: { type: "string", id: 13 },
            type: { type: "int32", id: 20 },
          },
        },
        NodeProto: {
          fields: {
            input: { rule: "repeated", type: "string", id: 1 },
            output: { rule: "repeated", type: "string", id: 2 },
            name: { type: "string", id: 3 },
            opType: { type: "string", id: 4 },
            attribute: { rule: "repeated", type: "AttributeProto", id: 5 },
            docString: { type: "string", id: 6 },
            domain: { type: "string", id: 7 },
          },
        },
        GraphProto: {
          fields: {
            node: { rule: "repeated", type: "NodeProto", id: 1 },
            name: { type: "string", id: 2 },
            initializer: { rule: "repeated", type: "TensorProto", id: 5 },
            docString: { type: "string", id: 10 },
            input: { rule: "repeated", type: "ValueInfoProto", id: 11 },
            output: { rule: "repeated", type: "ValueInfoProto", id: 12 },
            valueInfo: { rule: "repeated", type: "ValueInfoProto", id: 13 },
          },
        },
        ModelProto: {
          fields: {
            irVersion: { type: "int64", id: 1 },
            producerName: { type: "string", id: 2 },
            producerVersion: { type: "string", id: 3 },
            domain: { type: "string", id: 4 },
            modelVersion: { type: "int64", id: 5 },
            docString: { type: "string", id: 6 },
            graph: { type: "GraphProto", id: 7 },
            opsetImport: { rule: "repeated", type: "OperatorSetIdProto", id: 8 },
            metadataProps: { rule: "repeated", type: "StringStringEntryProto", id: 14 },
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(descriptor);
const modelType = root.lookupType("onnx.ModelProto");

/** protobuf's hard limit on one message; ORT refuses bigger model files. */
export const PROTOBUF_LIMIT = 2 ** 31 - 1;

/**
 * Serialises a ModelProto to bytes. Throws a RangeError when the result would pass protobuf's
 * 2 GiB limit (store big initializers as external data instead).
 */
export function encodeModelProto(model: ModelMessage): Uint8Array {
  const bytes = modelType.encode(model as unknown as Record<string, unknown>).finish();
  if (bytes.length > PROTOBUF_LIMIT) {
    throw new RangeError(
      `Cannot serialise model "${model.graph.name}": ${bytes.length} bytes exceed protobuf's ` +
        `2 GiB limit; write it with external data`,
    );
  }
  return bytes;
}

/** Parses ModelProto bytes back into plain data (used by tests and the cache). */
export function decodeModelProto(bytes: Uint8Array): ModelMessage {
  const message = modelType.decode(bytes);
  return modelType.toObject(message, { longs: Number, defaults: false }) as ModelMessage;
}
