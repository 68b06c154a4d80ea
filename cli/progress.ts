/**
 * Solver step events → a progress bar on stderr (npm `cli-progress`), or one JSON line per step
 * when stderr is not a terminal (logs, batch jobs).
 *
 * @module
 */
import cliProgress from "cli-progress";
import process from "node:process";
import type { StepEvent } from "../core/contracts.ts";

function nfeText(nfe: Record<string, number>): string {
  return Object.entries(nfe).map(([k, v]) => `${k}=${v}`).join(" ");
}

/** Shows solver progress on stderr. */
export class ProgressReporter {
  #bar: cliProgress.SingleBar | null = null;
  #enabled: boolean;
  #tty: boolean;

  /** @param enabled false for `--quiet` */
  constructor(enabled: boolean) {
    this.#enabled = enabled;
    this.#tty = Deno.stderr.isTerminal();
  }

  /** Report one step. */
  update(ev: StepEvent): void {
    if (!this.#enabled) return;
    const payload = {
      t: ev.t ?? "-",
      residual: ev.residual !== undefined ? ev.residual.toExponential(3) : "-",
      nfe: nfeText(ev.nfe),
    };
    if (!this.#tty) {
      console.error(JSON.stringify({ event: "step", ...ev, preview: undefined }));
      return;
    }
    if (!this.#bar) {
      this.#bar = new cliProgress.SingleBar({
        stream: process.stderr,
        format: "{bar} {value}/{total} | t={t} | ‖Ax−y‖={residual} | {nfe} | {duration_formatted}",
        hideCursor: true,
      }, cliProgress.Presets.shades_classic);
      this.#bar.start(ev.total, 0, payload);
    }
    this.#bar.update(ev.step + 1, payload);
  }

  /** Finish the bar. */
  stop(): void {
    this.#bar?.stop();
    this.#bar = null;
  }
}
