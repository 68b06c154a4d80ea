/**
 * Errors that carry a one-line, user-facing message. CLIs print `message` and exit with code 2
 * instead of showing a stack trace.
 *
 * @module
 */

/**
 * A problem with the user's input (a file, an option, a combination). CLIs exit with code 2.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { InputError } from "./errors.ts";
 * const e = new InputError("--seed: expected a non-negative integer, got -1");
 * assert.ok(e instanceof Error);
 * assert.equal(e.name, "InputError");
 * ```
 */
export class InputError extends Error {
  /**
   * Make an input error.
   *
   * @param message one line naming the input and what was expected
   */
  constructor(message: string) {
    super(message);
    this.name = "InputError";
  }
}
