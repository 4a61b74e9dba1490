/**
 * A registry of a model's components by name: each name has an opener that makes its ONNX
 * session (built from weights through the engine, or an export's graph), sessions are opened on
 * first use and shared, and any of them can be released between stages. Pipelines add their own
 * components (a ControlNet, a motion-module UNet) to the same registry, so low-memory release and
 * cleanup treat every session alike.
 *
 * @module
 */
import type { OnnxSession } from "../onnx/session.ts";

/** Opens one component's session. */
export type ComponentOpener = () => Promise<OnnxSession>;

/**
 * Sessions by component name, opened lazily.
 *
 * @example
 * ```ts
 * import { ComponentRegistry } from "./components.ts";
 * const components = new ComponentRegistry();
 * console.assert(!components.has("unet") && components.openNames().length === 0);
 * ```
 */
export class ComponentRegistry {
  #openers = new Map<string, ComponentOpener>();
  #sessions = new Map<string, Promise<OnnxSession>>();
  #describe: (name: string) => string;

  /** `describe` names an unknown component in the error message (default: the name alone). */
  constructor(describe: (name: string) => string = (name) => `component "${name}"`) {
    this.#describe = describe;
  }

  /** Adds (or replaces) a component; a replaced component's open session is released. */
  async register(name: string, opener: ComponentOpener): Promise<void> {
    if (this.#openers.has(name)) await this.release(name);
    this.#openers.set(name, opener);
  }

  /** True when `name` is registered. */
  has(name: string): boolean {
    return this.#openers.has(name);
  }

  /** The session of a component, opening it on first use. */
  session(name: string): Promise<OnnxSession> {
    let session = this.#sessions.get(name);
    if (session === undefined) {
      const opener = this.#openers.get(name);
      if (opener === undefined) {
        return Promise.reject(new RangeError(`Cannot run the ${this.#describe(name)}`));
      }
      session = opener();
      this.#sessions.set(name, session);
      session.catch(() => this.#sessions.delete(name));
    }
    return session;
  }

  /** Names of the components whose sessions are open (or opening). */
  openNames(): string[] {
    return [...this.#sessions.keys()];
  }

  /** Frees one component's session (it opens again on next use). */
  async release(name: string): Promise<void> {
    const session = this.#sessions.get(name);
    if (session === undefined) return;
    this.#sessions.delete(name);
    await (await session).release();
  }

  /** Frees every open session. */
  async releaseAll(): Promise<void> {
    for (const name of [...this.#sessions.keys()]) await this.release(name);
  }
}
