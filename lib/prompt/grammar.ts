/**
 * Chevrotain lexer and parser for the bracket structure of AUTOMATIC1111 prompts: emphasis
 * `(a)`, `(a:1.2)`, `[a]`, scheduling `[from:to:when]`, `[to:when]`, `[from::when]`,
 * alternation `[a|b|c]`, escapes `\(` etc.
 *
 * The grammar is the lark grammar `schedule_parser` of AUTOMATIC1111/stable-diffusion-webui
 * modules/prompt_parser.py (commit 28bd8e142d5f77b71ae8d7d7140b5da1b3a49906), left-factored for
 * an LL parser:
 *
 * ```
 * start     : (item | stray)*            stray: ( ) [ ] : that do not open a construct (tolerant)
 * prompt    : item*
 * item      : paren | bracket | TEXT | NUMBER | WS | ESCAPE
 * paren     : "(" prompt (")" | ":" prompt ")")
 * bracket   : "[" prompt ( "]"                                     emphasis down
 *                        | ("|" prompt)+ "]"                        alternation
 *                        | ":" WS? NUMBER WS? "]"                   [to:when]
 *                        | ":" prompt ":" WS? NUMBER WS? "]" )      [from:to:when]
 * ```
 *
 * lark resolves the ambiguity between a construct and stray brackets with its Earley parser;
 * here a top-level bracket opens a construct when one parses from it (chevrotain BACKTRACK)
 * and is a stray character otherwise. A `|` outside an alternation, or a `\` at the end of the
 * text or before a line break, make the whole prompt unparsable, as in lark.
 *
 * @module
 */
import {
  createToken,
  EmbeddedActionsParser,
  type ILexingError,
  type IRecognitionException,
  type IToken,
  Lexer,
  type TokenType,
} from "chevrotain";
import { PY_SPACE } from "../tokenizer/python_re.ts";

/** A piece of prompt structure; {@linkcode nodesToText} turns nodes back into prompt text. */
export type PromptNode =
  | { type: "text"; text: string; offset: number }
  | { type: "stray"; text: string; offset: number }
  | { type: "emphasis"; bracket: "(" | "["; children: PromptNode[]; weight?: PromptNode[] }
  | {
    type: "scheduled";
    from: PromptNode[] | null;
    to: PromptNode[];
    /** The `when` number as written. */
    when: string;
  }
  | { type: "alternate"; options: PromptNode[][] };

const Ws = createToken({ name: "Ws", pattern: new RegExp(`[${PY_SPACE}]+`, "u") });
const Text = createToken({
  name: "Text",
  pattern: new RegExp(`[^\\\\()\\[\\]:|${PY_SPACE}]+`, "u"),
});
// lark's common.SIGNED_NUMBER; a longer plain run ("3x") stays text.
const NumberToken = createToken({
  name: "Number",
  pattern: /[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/,
  longer_alt: Text,
});
const Escape = createToken({ name: "Escape", pattern: /\\[^\n]/u });
const Backslash = createToken({ name: "Backslash", pattern: /\\/ });
const LParen = createToken({ name: "LParen", pattern: /\(/ });
const RParen = createToken({ name: "RParen", pattern: /\)/ });
const LBracket = createToken({ name: "LBracket", pattern: /\[/ });
const RBracket = createToken({ name: "RBracket", pattern: /\]/ });
const Colon = createToken({ name: "Colon", pattern: /:/ });
const Pipe = createToken({ name: "Pipe", pattern: /\|/ });

const ALL_TOKENS: TokenType[] = [
  Ws,
  NumberToken,
  Text,
  Escape,
  Backslash,
  LParen,
  RParen,
  LBracket,
  RBracket,
  Colon,
  Pipe,
];

const lexer = new Lexer(ALL_TOKENS, {
  positionTracking: "full",
  ensureOptimizations: false,
  skipValidations: true,
});

class PromptParser extends EmbeddedActionsParser {
  constructor() {
    super(ALL_TOKENS, { recoveryEnabled: false, maxLookahead: 4, skipValidations: true });
    this.performSelfAnalysis();
  }

  #leaf = (type: "text" | "stray", token: IToken): PromptNode => ({
    type,
    text: token.image,
    offset: token.startOffset,
  });

  /** Tolerant top level: brackets that open no construct are literal characters. */
  tolerant = this.RULE("tolerant", (): PromptNode[] => {
    const nodes: PromptNode[] = [];
    this.MANY(() => {
      this.OR({
        IGNORE_AMBIGUITIES: true,
        DEF: [
          {
            GATE: this.BACKTRACK(this.paren),
            ALT: () => nodes.push(this.SUBRULE(this.paren)),
          },
          {
            GATE: this.BACKTRACK(this.bracket),
            ALT: () => nodes.push(this.SUBRULE2(this.bracket)),
          },
          { ALT: () => nodes.push(this.#leaf("text", this.CONSUME(Text))) },
          { ALT: () => nodes.push(this.#leaf("text", this.CONSUME(NumberToken))) },
          { ALT: () => nodes.push(this.#leaf("text", this.CONSUME(Ws))) },
          { ALT: () => nodes.push(this.#leaf("text", this.CONSUME(Escape))) },
          { ALT: () => nodes.push(this.#leaf("stray", this.CONSUME(LParen))) },
          { ALT: () => nodes.push(this.#leaf("stray", this.CONSUME(RParen))) },
          { ALT: () => nodes.push(this.#leaf("stray", this.CONSUME(LBracket))) },
          { ALT: () => nodes.push(this.#leaf("stray", this.CONSUME(RBracket))) },
          { ALT: () => nodes.push(this.#leaf("stray", this.CONSUME(Colon))) },
        ],
      });
    });
    return nodes;
  });

  /** Strict top level: every bracket must be balanced; a bare ":" is still text. */
  strict = this.RULE("strict", (): PromptNode[] => {
    const nodes: PromptNode[] = [];
    this.MANY(() => {
      this.OR([
        { ALT: () => nodes.push(this.SUBRULE(this.item)) },
        { ALT: () => nodes.push(this.#leaf("text", this.CONSUME(Colon))) },
      ]);
    });
    return nodes;
  });

  prompt = this.RULE("prompt", (): PromptNode[] => {
    const nodes: PromptNode[] = [];
    this.MANY(() => nodes.push(this.SUBRULE(this.item)));
    return nodes;
  });

  item = this.RULE("item", (): PromptNode => {
    return this.OR([
      { ALT: () => this.SUBRULE(this.paren) },
      { ALT: () => this.SUBRULE(this.bracket) },
      { ALT: () => this.#leaf("text", this.CONSUME(Text)) },
      { ALT: () => this.#leaf("text", this.CONSUME(NumberToken)) },
      { ALT: () => this.#leaf("text", this.CONSUME(Ws)) },
      { ALT: () => this.#leaf("text", this.CONSUME(Escape)) },
    ]);
  });

  paren = this.RULE("paren", (): PromptNode => {
    this.CONSUME(LParen);
    const children = this.SUBRULE(this.prompt);
    const weight = this.OPTION(() => {
      this.CONSUME(Colon);
      return this.SUBRULE2(this.prompt);
    });
    this.CONSUME(RParen);
    return weight === undefined
      ? { type: "emphasis", bracket: "(", children }
      : { type: "emphasis", bracket: "(", children, weight };
  });

  bracket = this.RULE("bracket", (): PromptNode => {
    this.CONSUME(LBracket);
    const first = this.SUBRULE(this.prompt);
    return this.OR([
      {
        ALT: () => {
          this.CONSUME(RBracket);
          return { type: "emphasis", bracket: "[", children: first } as PromptNode;
        },
      },
      {
        ALT: () => {
          const options = [first];
          this.AT_LEAST_ONE(() => {
            this.CONSUME(Pipe);
            options.push(this.SUBRULE2(this.prompt));
          });
          this.CONSUME2(RBracket);
          return { type: "alternate", options } as PromptNode;
        },
      },
      {
        ALT: () => {
          this.CONSUME(Colon);
          return this.OR2({
            IGNORE_AMBIGUITIES: true,
            DEF: [
              {
                GATE: () => this.#numberThenClose(),
                ALT: () => {
                  const when = this.SUBRULE(this.when);
                  return { type: "scheduled", from: null, to: first, when } as PromptNode;
                },
              },
              {
                ALT: () => {
                  const to = this.SUBRULE3(this.prompt);
                  this.CONSUME2(Colon);
                  const when = this.SUBRULE2(this.when);
                  return { type: "scheduled", from: first, to, when } as PromptNode;
                },
              },
            ],
          });
        },
      },
    ]);
  });

  when = this.RULE("when", (): string => {
    this.OPTION(() => this.CONSUME(Ws));
    const number = this.CONSUME(NumberToken);
    this.OPTION2(() => this.CONSUME2(Ws));
    this.CONSUME(RBracket);
    return number.image;
  });

  #numberThenClose(): boolean {
    let k = 1;
    if (this.LA(k).tokenType === Ws) k++;
    if (this.LA(k).tokenType !== NumberToken) return false;
    k++;
    if (this.LA(k).tokenType === Ws) k++;
    return this.LA(k).tokenType === RBracket;
  }
}

const parser = new PromptParser();

/** Where a {@linkcode parseBrackets} failure happened. */
export interface BracketError {
  /** 0-based offset into the text. */
  offset: number;
  /** 1-based line and column. */
  line: number;
  column: number;
  /** What went wrong, in words. */
  message: string;
}

/** Result of {@linkcode parseBrackets}: nodes, or the first error. */
export type BracketParse = { ok: true; nodes: PromptNode[] } | { ok: false; error: BracketError };

function describe(token: IToken): string {
  return token.tokenType.name === "EOF" ? "end of prompt" : `"${token.image}"`;
}

function lexError(err: ILexingError): BracketError {
  return {
    offset: err.offset,
    line: err.line ?? 1,
    column: err.column ?? err.offset + 1,
    message: "unexpected character",
  };
}

function parseError(err: IRecognitionException, text: string): BracketError {
  const token = err.token;
  const eof = token.tokenType.name === "EOF";
  const offset = eof ? text.length : token.startOffset;
  const before = text.slice(0, offset);
  const line = before.split("\n").length;
  const column = offset - (before.lastIndexOf("\n") + 1) + 1;
  let message = `unexpected ${describe(token)}`;
  if (token.image === "|") message += " outside [a|b] alternation";
  else if (token.image === "\\") message += " (a backslash must escape a character)";
  else if (eof) message += " (a bracket is not closed)";
  return { offset, line, column, message };
}

/**
 * Deepest bracket nesting parsed. The parser recurses once per level (and backtracks from each
 * top-level bracket), so a prompt of thousands of "(" would overflow the stack; A1111's own
 * parser (lark, under Python's recursion limit of 1000) gives up on such prompts too.
 */
export const MAX_NESTING = 200;

/** The first bracket that opens level MAX_NESTING + 1 (escapes skipped), or -1. */
function tooDeepAt(text: string): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) i++; // "\": the next character is escaped
    else if (c === 0x28 || c === 0x5b) {
      if (++depth > MAX_NESTING) return i;
    } else if ((c === 0x29 || c === 0x5d) && depth > 0) depth--;
  }
  return -1;
}

/**
 * Parses the bracket structure of an A1111 prompt. `tolerant` (A1111's behaviour) turns
 * brackets that open no construct into literal `stray` nodes; `strict` reports them. Never
 * throws: failures come back as `{ ok: false, error }`, brackets nested deeper than
 * {@linkcode MAX_NESTING} levels included.
 */
export function parseBrackets(text: string, mode: "tolerant" | "strict"): BracketParse {
  const deep = tooDeepAt(text);
  if (deep >= 0) {
    const before = text.slice(0, deep);
    const line = before.split("\n").length;
    const column = deep - (before.lastIndexOf("\n") + 1) + 1;
    return {
      ok: false,
      error: {
        offset: deep,
        line,
        column,
        message: `brackets nest deeper than ${MAX_NESTING} levels`,
      },
    };
  }
  const lexed = lexer.tokenize(text);
  const firstLexError = lexed.errors[0];
  if (firstLexError !== undefined) return { ok: false, error: lexError(firstLexError) };
  parser.input = lexed.tokens;
  const nodes = mode === "tolerant" ? parser.tolerant() : parser.strict();
  const firstError = parser.errors[0];
  if (firstError !== undefined) return { ok: false, error: parseError(firstError, text) };
  return { ok: true, nodes };
}

/** The text a list of nodes was parsed from. */
export function nodesToText(nodes: readonly PromptNode[]): string {
  let out = "";
  for (const node of nodes) {
    switch (node.type) {
      case "text":
      case "stray":
        out += node.text;
        break;
      case "emphasis":
        out += node.bracket === "("
          ? `(${nodesToText(node.children)}${
            node.weight === undefined ? "" : `:${nodesToText(node.weight)}`
          })`
          : `[${nodesToText(node.children)}]`;
        break;
      case "scheduled":
        out += `[${node.from === null ? "" : `${nodesToText(node.from)}:`}${
          nodesToText(node.to)
        }:${node.when}]`;
        break;
      case "alternate":
        out += `[${node.options.map(nodesToText).join("|")}]`;
        break;
    }
  }
  return out;
}
