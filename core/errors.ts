/**
 * Errors that carry a one-line, user-facing message. CLIs print `message` and exit with code 2
 * instead of showing a stack trace.
 *
 * @module
 */

/** A problem with the user's input (a file, an option, a combination). CLIs exit with code 2. */
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
