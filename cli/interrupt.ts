/**
 * Ctrl-C for long commands: the first press prints "stopping after this step…" at once and aborts
 * a signal that the work checks between steps; the command then removes what it created and exits
 * with 130, as shells expect. A second press removes those files and exits at once.
 *
 * "At once" even while the main thread is busy inside a long step (a JPEG prox can take 20 s):
 * a small worker listens for SIGINT and prints the line itself; the main thread's listener aborts
 * the signal when it next gets control (between awaits, at the latest when the step ends). The
 * second press is handled in the worker too: it removes the tracked paths and ends the process
 * with libc's `_exit(130)` through Deno's FFI (the worker's `Deno.exit` would end only the worker).
 *
 * ```ts ignore
 * const stop = new Interrupt();
 * try {
 *   stop.track(outDir);                       // removed if interrupted
 *   await runSolver(…, { signal: stop.signal });
 * } catch (e) {
 *   if (stop.interrupted) return await stop.exitCode(); // removes tracked paths → 130
 *   throw e;
 * } finally {
 *   stop.dispose();
 * }
 * ```
 *
 * @module
 */

/** The line printed on the first Ctrl-C. */
export const STOPPING = "stopping after this step… (Ctrl-C again to stop now)";

/** Exit code of an interrupted command (128 + SIGINT). */
export const INTERRUPTED_EXIT_CODE = 130;

const WORKER = `
const tracked = [];
let presses = 0;
self.onmessage = (e) => {
  if (e.data?.track) tracked.push(e.data.track);
  if (e.data?.untrack) {
    const i = tracked.lastIndexOf(e.data.untrack);
    if (i >= 0) tracked.splice(i, 1);
  }
};
const exitNow = () => {
  for (const p of [...tracked].reverse()) {
    try { Deno.removeSync(p, { recursive: true }); } catch { /* gone already */ }
  }
  try {
    const name = Deno.build.os === "darwin" ? "libSystem.B.dylib" : "libc.so.6";
    Deno.dlopen(name, { _exit: { parameters: ["i32"], result: "void" } }).symbols._exit(130);
  } catch { /* no ffi: the main thread exits when it gets control */ }
};
Deno.addSignalListener("SIGINT", () => {
  presses++;
  if (presses === 1) {
    const tty = Deno.stderr.isTerminal();
    const text = (tty ? "\\r\\x1b[2K" : "") + MESSAGE + "\\n";
    Deno.stderr.writeSync(new TextEncoder().encode(text));
    self.postMessage("first");
  } else exitNow();
});
self.postMessage("ready");
`;

/** Ctrl-C handling for one command (see the module doc). */
export class Interrupt {
  readonly #controller = new AbortController();
  readonly #tracked: string[] = [];
  #worker: Worker | undefined;
  #listener: (() => void) | undefined;
  #ready: Promise<void> = Promise.resolve();
  #quiet: boolean;
  #workerListens = false;

  /** @param options `quiet`: print nothing on Ctrl-C (still stop and clean up) */
  constructor(options: { quiet?: boolean } = {}) {
    this.#quiet = options.quiet ?? false;
    const message = JSON.stringify(this.#quiet ? "" : STOPPING);
    try {
      const code = WORKER.replace("MESSAGE", this.#quiet ? '""' : message);
      const url = URL.createObjectURL(new Blob([code], { type: "application/javascript" }));
      const worker = new Worker(url, { type: "module" });
      this.#ready = new Promise((resolve) => {
        worker.onmessage = (e) => {
          if (e.data === "ready") {
            this.#workerListens = true;
            resolve();
          }
          if (e.data === "first") this.#abort();
        };
        worker.onerror = (e) => {
          e.preventDefault();
          resolve();
        };
      });
      this.#worker = worker;
    } catch { /* no workers: the main-thread listener below still stops between steps */ }
    try {
      this.#listener = () => {
        // the worker printed the line already, unless it was not listening yet
        if (!this.#workerListens && !this.interrupted && !this.#quiet) console.error(STOPPING);
        this.#abort();
      };
      Deno.addSignalListener("SIGINT", this.#listener);
    } catch {
      this.#listener = undefined; // signals unavailable (e.g. Windows without a console)
    }
  }

  #abort(): void {
    this.#controller.abort(new DOMException("interrupted (Ctrl-C)", "AbortError"));
  }

  /** Aborted on the first Ctrl-C. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether Ctrl-C was pressed. */
  get interrupted(): boolean {
    return this.#controller.signal.aborted;
  }

  /** Resolves once the listening worker is in place (tests; signals before it still count). */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** A file or folder this command created: removed if it is interrupted. */
  track(path: string): void {
    this.#tracked.push(path);
    this.#worker?.postMessage({ track: path });
  }

  /** A tracked path that is complete and must stay (e.g. the finished output folder). */
  untrack(path: string): void {
    const i = this.#tracked.lastIndexOf(path);
    if (i >= 0) this.#tracked.splice(i, 1);
    this.#worker?.postMessage({ untrack: path });
  }

  /** Remove the tracked paths (newest first) and return the exit code for an interruption. */
  async exitCode(): Promise<number> {
    for (const p of [...this.#tracked].reverse()) {
      await Deno.remove(p, { recursive: true }).catch(() => {});
    }
    this.#tracked.length = 0;
    return INTERRUPTED_EXIT_CODE;
  }

  /** Stop listening. */
  dispose(): void {
    if (this.#listener) {
      try {
        Deno.removeSignalListener("SIGINT", this.#listener);
      } catch { /* ignore */ }
    }
    this.#worker?.terminate();
    this.#worker = undefined;
  }
}
