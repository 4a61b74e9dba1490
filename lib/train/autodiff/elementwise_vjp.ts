/**
 * VJPs of elementwise ops, broadcasting included: Add, Sub, Mul, Div, Pow, Neg, Identity, Cast,
 * Sum, Where, Sigmoid, Tanh, Erf, Exp, Log, Sqrt, Reciprocal, Relu, Abs, Sin, Cos. Broadcast
 * inputs get their gradient summed back to their own shape ({@linkcode sumToShape}).
 *
 * @module
 */
import { onnxType, type Value } from "../../onnx/graph.ts";
import {
  FLOAT_TYPES,
  onlyInputs,
  scalarOf,
  single,
  sumToShape,
  type VjpContext,
  type VjpRule,
} from "./vjp.ts";

/** `d` (of the output's shape) summed to input `i`'s shape. */
function toInput(ctx: VjpContext, d: Value, i: number): Value {
  return sumToShape(ctx.g, d, ctx.outInfo(0).shape, ctx.inInfo(i).shape);
}

/** A rule for `y = f(x)` whose derivative is `dy * local(ctx)`. */
function unary(local: (ctx: VjpContext, dy: Value) => Value): VjpRule {
  return (ctx, dY) => [ctx.needs(0) ? local(ctx, single(ctx, dY)) : null];
}

function s(ctx: VjpContext, v: number): Value {
  return scalarOf(ctx.g, v, ctx.outInfo(0).dtype);
}

/** VJP rules of the elementwise ops, by op type. */
export const ELEMENTWISE_VJPS: Readonly<Record<string, VjpRule>> = {
  Identity: unary((_ctx, dy) => dy),
  Neg: unary((ctx, dy) => ctx.g.op("Neg", [dy])),
  // Only float-to-float casts carry gradients: cast the gradient back.
  Cast: unary((ctx, dy) => {
    const from = ctx.inInfo(0).dtype;
    if (!FLOAT_TYPES.has(ctx.outInfo(0).dtype)) return ctx.g.op("Identity", [dy]);
    return from === ctx.outInfo(0).dtype ? dy : ctx.g.op("Cast", [dy], { to: onnxType(from) });
  }),
  Add: (ctx, dY) => {
    const d = single(ctx, dY);
    return [ctx.needs(0) ? toInput(ctx, d, 0) : null, ctx.needs(1) ? toInput(ctx, d, 1) : null];
  },
  Sub: (ctx, dY) => {
    const d = single(ctx, dY);
    return [
      ctx.needs(0) ? toInput(ctx, d, 0) : null,
      ctx.needs(1) ? toInput(ctx, ctx.g.op("Neg", [d]), 1) : null,
    ];
  },
  Sum: (ctx, dY) => {
    const d = single(ctx, dY);
    return ctx.node.input.map((_, i) => (ctx.needs(i) ? toInput(ctx, d, i) : null));
  },
  Mul: (ctx, dY) => {
    const d = single(ctx, dY);
    const g = ctx.g;
    // d(a*b) = b da + a db
    return [
      ctx.needs(0) ? toInput(ctx, g.op("Mul", [d, ctx.input(1)!]), 0) : null,
      ctx.needs(1) ? toInput(ctx, g.op("Mul", [d, ctx.input(0)!]), 1) : null,
    ];
  },
  Div: (ctx, dY) => {
    const d = single(ctx, dY);
    const g = ctx.g;
    const b = ctx.input(1)!;
    // d(a/b) = da / b - (a/b) db / b
    return [
      ctx.needs(0) ? toInput(ctx, g.op("Div", [d, b]), 0) : null,
      ctx.needs(1)
        ? toInput(ctx, g.op("Neg", [g.op("Div", [g.op("Mul", [d, ctx.output(0)]), b])]), 1)
        : null,
    ];
  },
  Pow: (ctx, dY) => {
    const d = single(ctx, dY);
    const g = ctx.g;
    const x = ctx.input(0)!;
    const e = ctx.input(1)!;
    const eInfo = ctx.inInfo(1);
    let dx: Value | null = null;
    if (ctx.needs(0)) {
      const c = eInfo.value !== undefined && eInfo.value.length === 1 ? eInfo.value[0]! : null;
      let local: Value;
      if (c === 2) local = g.op("Mul", [x, s(ctx, 2)]);
      else if (c !== null) local = g.op("Mul", [g.op("Pow", [x, s(ctx, c - 1)]), s(ctx, c)]);
      else {
        // e * x^(e-1), with e cast to x's type when it is not (Pow allows mixed types)
        const ef = eInfo.dtype === ctx.inInfo(0).dtype
          ? e
          : g.op("Cast", [e], { to: onnxType(ctx.inInfo(0).dtype) });
        local = g.op("Mul", [g.op("Pow", [x, g.op("Sub", [ef, s(ctx, 1)])]), ef]);
      }
      dx = toInput(ctx, g.op("Mul", [d, local]), 0);
    }
    // d(x^e)/de = x^e ln x
    const de = ctx.needs(1)
      ? toInput(ctx, g.op("Mul", [d, g.op("Mul", [ctx.output(0), g.op("Log", [x])])]), 1)
      : null;
    return [dx, de];
  },
  Where: (ctx, dY) => {
    onlyInputs(ctx, [1, 2], "the condition is not differentiable");
    const d = single(ctx, dY);
    const g = ctx.g;
    const zero = s(ctx, 0);
    const cond = ctx.input(0)!;
    return [
      null,
      ctx.needs(1) ? toInput(ctx, g.op("Where", [cond, d, zero]), 1) : null,
      ctx.needs(2) ? toInput(ctx, g.op("Where", [cond, zero, d]), 2) : null,
    ];
  },
  // y = 1 / (1 + e^-x): dy/dx = y (1 - y)
  Sigmoid: unary((ctx, dy) => {
    const y = ctx.output(0);
    const g = ctx.g;
    return g.op("Mul", [dy, g.op("Mul", [y, g.op("Sub", [s(ctx, 1), y])])]);
  }),
  // dy/dx = 1 - y^2
  Tanh: unary((ctx, dy) => {
    const y = ctx.output(0);
    const g = ctx.g;
    return g.op("Mul", [dy, g.op("Sub", [s(ctx, 1), g.op("Mul", [y, y])])]);
  }),
  // d erf(x)/dx = 2/sqrt(pi) e^(-x^2)
  Erf: unary((ctx, dy) => {
    const x = ctx.input(0)!;
    const g = ctx.g;
    const gauss = g.op("Exp", [g.op("Neg", [g.op("Mul", [x, x])])]);
    return g.op("Mul", [dy, g.op("Mul", [gauss, s(ctx, 2 / Math.sqrt(Math.PI))])]);
  }),
  Exp: unary((ctx, dy) => ctx.g.op("Mul", [dy, ctx.output(0)])),
  Log: unary((ctx, dy) => ctx.g.op("Div", [dy, ctx.input(0)!])),
  // d sqrt(x) = 1 / (2 sqrt(x))
  Sqrt: unary((ctx, dy) => ctx.g.op("Div", [ctx.g.op("Mul", [dy, s(ctx, 0.5)]), ctx.output(0)])),
  // d (1/x) = -1/x^2 = -y^2
  Reciprocal: unary((ctx, dy) => {
    const y = ctx.output(0);
    return ctx.g.op("Neg", [ctx.g.op("Mul", [dy, ctx.g.op("Mul", [y, y])])]);
  }),
  Relu: unary((ctx, dy) => {
    const g = ctx.g;
    const positive = g.op("Greater", [ctx.input(0)!, s(ctx, 0)]);
    return g.op("Where", [positive, dy, s(ctx, 0)]);
  }),
  Abs: unary((ctx, dy) => ctx.g.op("Mul", [dy, ctx.g.op("Sign", [ctx.input(0)!])])),
  Sin: unary((ctx, dy) => ctx.g.op("Mul", [dy, ctx.g.op("Cos", [ctx.input(0)!])])),
  Cos: unary((ctx, dy) =>
    ctx.g.op("Neg", [ctx.g.op("Mul", [dy, ctx.g.op("Sin", [ctx.input(0)!])])])
  ),
};
