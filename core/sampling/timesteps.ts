/**
 * Timestep grids as diffusers' `set_timesteps` makes them (DDIM, DDPM, PNDM…), for T training
 * steps and n inference steps, in decreasing order:
 *
 * - "leading":  ⌊T/n⌋·k for k = n−1 … 0, plus `steps_offset` (SD 1.x configs: 1)
 * - "trailing": round(T − k·T/n) − 1 for k = 0 … n−1 (starts at T−1; Lin et al. 2023)
 * - "linspace": round(linspace(0, T−1, n)) reversed
 *
 * Rounding is half-to-even, as numpy's `round`. The previous timestep of t is t − ⌊T/n⌋ for every
 * spacing (diffusers `DDIMScheduler.step` and `DDPMScheduler.previous_timestep`), so with
 * "trailing" and n not dividing T it is not always the next grid entry — a diffusers quirk kept
 * here; {@link stepPairs} offers both.
 *
 * @module
 */

/** How a grid spaces its timesteps (diffusers `timestep_spacing`). */
export type TimestepSpacing = "leading" | "trailing" | "linspace";

/** Options of {@link timestepGrid}. */
export interface GridOptions {
  /** T, the number of training timesteps (default 1000). */
  numTrainTimesteps?: number;
  /** Added to every "leading" timestep (diffusers `steps_offset`, default 0). */
  stepsOffset?: number;
}

/**
 * Round half to even (numpy's `round`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { roundHalfEven } from "./timesteps.ts";
 * assert.deepEqual([0.5, 1.5, 2.5, -0.5, 2.4].map(roundHalfEven), [0, 2, 2, -0, 2]);
 * ```
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The n inference timesteps of a spacing, decreasing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { timestepGrid } from "./timesteps.ts";
 * assert.deepEqual(timestepGrid(4, "trailing"), [999, 749, 499, 249]);
 * assert.deepEqual(timestepGrid(4, "leading", { stepsOffset: 1 }), [751, 501, 251, 1]);
 * assert.deepEqual(timestepGrid(3, "linspace"), [999, 500, 0]); // 499.5 rounds to even
 * assert.deepEqual(timestepGrid(3, "trailing"), [999, 666, 332]);
 * ```
 */
export function timestepGrid(
  steps: number,
  spacing: TimestepSpacing,
  options: GridOptions = {},
): number[] {
  const T = options.numTrainTimesteps ?? 1000;
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new RangeError(`number of steps ${steps} must be an integer in [1, ${T}]`);
  }
  switch (spacing) {
    case "leading": {
      const ratio = Math.floor(T / steps), off = options.stepsOffset ?? 0;
      const ts = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + off);
      if (ts[0] >= T) throw new RangeError(`steps_offset ${off}: the grid passes T − 1 = ${T - 1}`);
      return ts;
    }
    case "trailing": {
      const ratio = T / steps;
      return Array.from({ length: steps }, (_, i) => roundHalfEven(T - i * ratio) - 1);
    }
    case "linspace":
      return Array.from(
        { length: steps },
        (_, i) => roundHalfEven(steps === 1 ? 0 : ((T - 1) * (steps - 1 - i)) / (steps - 1)),
      );
    default:
      throw new RangeError(`unknown timestep spacing ${JSON.stringify(spacing)}`);
  }
}

/**
 * diffusers' previous timestep: t − ⌊T/n⌋ (negative past the end).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { previousTimestep } from "./timesteps.ts";
 * assert.equal(previousTimestep(999, 4), 749);
 * assert.equal(previousTimestep(249, 4), -1);
 * ```
 */
export function previousTimestep(t: number, steps: number, numTrainTimesteps = 1000): number {
  return t - Math.floor(numTrainTimesteps / steps);
}

/** One step of a grid: from `t` to `prev` (negative: past the last training step). */
export interface StepPair {
  /** Current timestep. */
  t: number;
  /** Previous (next smaller) timestep, or negative. */
  prev: number;
}

/**
 * The (t, t') pairs of a grid: "diffusers" takes t' = t − ⌊T/n⌋ as the schedulers do; "next"
 * takes the next grid entry (and −1 after the last), for custom grids.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { stepPairs, timestepGrid } from "./timesteps.ts";
 * const ts = timestepGrid(3, "trailing"); // 999, 666, 332
 * assert.deepEqual(stepPairs(ts).map((p) => p.prev), [666, 333, -1]);
 * assert.deepEqual(stepPairs(ts, "next").map((p) => p.prev), [666, 332, -1]);
 * ```
 */
export function stepPairs(
  timesteps: readonly number[],
  previous: "diffusers" | "next" = "diffusers",
  numTrainTimesteps = 1000,
): StepPair[] {
  return timesteps.map((t, i) => ({
    t,
    prev: previous === "next"
      ? (i + 1 < timesteps.length ? timesteps[i + 1] : -1)
      : Math.max(previousTimestep(t, timesteps.length, numTrainTimesteps), -1),
  }));
}
