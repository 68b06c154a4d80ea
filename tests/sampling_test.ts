/**
 * The sampling layer (core/sampling): timestep grids against numpy/diffusers, and the DDIM/DDPM
 * coefficients against their defining identities.
 */
import assert from "node:assert/strict";
import {
  ddimCoefficients,
  ddpmCoefficients,
  predictionAffine,
  stepPairs,
  timestepGrid,
} from "../core/sampling/mod.ts";
import { alphasCumprod, betaSchedule } from "../core/pipeline/schedule.ts";

const SCHEDULE = {
  numTrainTimesteps: 1000,
  alphasCumprod: alphasCumprod(betaSchedule("scaled_linear", 1000, 0.00085, 0.012)),
};

Deno.test("timestep grids equal diffusers' (numpy round-half-even) for leading, trailing, linspace", () => {
  // From numpy 2.4 with diffusers' formulas (T = 1000, steps_offset = 1 for "leading").
  const expected: Record<string, Record<number, number[]>> = {
    leading: {
      3: [667, 334, 1],
      7: [853, 711, 569, 427, 285, 143, 1],
      16: [931, 869, 807, 745, 683, 621, 559, 497, 435, 373, 311, 249, 187, 125, 63, 1],
    },
    trailing: {
      3: [999, 666, 332],
      7: [999, 856, 713, 570, 428, 285, 142],
      16: [999, 937, 874, 811, 749, 687, 624, 561, 499, 437, 374, 311, 249, 187, 124, 61],
    },
    linspace: {
      3: [999, 500, 0],
      7: [999, 832, 666, 500, 333, 166, 0],
      16: [999, 932, 866, 799, 733, 666, 599, 533, 466, 400, 333, 266, 200, 133, 67, 0],
    },
  };
  for (const [spacing, grids] of Object.entries(expected)) {
    for (const [n, ts] of Object.entries(grids)) {
      const got = timestepGrid(Number(n), spacing as "leading", { stepsOffset: 1 });
      assert.deepEqual(got, ts, `${spacing} ${n}`);
    }
  }
  assert.deepEqual(timestepGrid(1000, "trailing"), Array.from({ length: 1000 }, (_, i) => 999 - i));
  assert.throws(() => timestepGrid(1000, "leading", { stepsOffset: 1 }), /passes T − 1/);
});

Deno.test("DDIM: η = 1 gives DDPM's posterior σ; the noise-free part keeps ᾱ'-marginals", () => {
  for (const { t, prev } of stepPairs(timestepGrid(7, "trailing"))) {
    const abp = prev >= 0 ? SCHEDULE.alphasCumprod[prev] : 1;
    for (const eta of [0, 0.5, 1]) {
      // x̂0 coefficient √ᾱ', and (ε-coefficient)² + σ² = 1 − ᾱ' for every η
      const c = ddimCoefficients(SCHEDULE, t, prev, { eta });
      assert.ok(Math.abs(c.x0 - Math.sqrt(abp)) < 1e-15);
      assert.ok(Math.abs(c.eps ** 2 + c.sigma ** 2 - (1 - abp)) < 1e-15);
    }
    // η = 1 gives the DDPM posterior standard deviation (Song et al. 2021, §4.1)
    const s1 = ddimCoefficients(SCHEDULE, t, prev, { eta: 1 }).sigma;
    const s2 = ddpmCoefficients(SCHEDULE, t, prev).sigma;
    assert.ok(Math.abs(s1 - s2) <= 1e-12 * Math.max(s2, 1e-10), `t=${t}: ${s1} vs ${s2}`);
  }
});

Deno.test("DDPM: the posterior step preserves the forward marginal of a point mass", () => {
  // If z_t ~ N(√ᾱ x0, 1−ᾱ) and x̂0 = x0 exactly, q(z_t' | z_t, x0) gives z_t' ~ N(√ᾱ' x0, 1−ᾱ').
  for (const [t, prev] of [[999, 998], [500, 250], [10, 0], [3, -1]]) {
    const c = ddpmCoefficients(SCHEDULE, t, prev);
    const ab = SCHEDULE.alphasCumprod[t], abp = prev >= 0 ? SCHEDULE.alphasCumprod[prev] : 1;
    const mean = c.x0 + c.z * Math.sqrt(ab); // per unit x0
    const variance = c.z * c.z * (1 - ab) + c.sigma * c.sigma;
    assert.ok(Math.abs(mean - Math.sqrt(abp)) < 1e-12, `mean t=${t}`);
    assert.ok(Math.abs(variance - (1 - abp)) < 1e-12, `variance t=${t}`);
  }
});

Deno.test("prediction parameterisations: x̂0 and ε̂ reconstruct z_t = √ᾱ x̂0 + √(1−ᾱ) ε̂", () => {
  for (const type of ["epsilon", "v_prediction", "sample"] as const) {
    for (const ab of [0.0047, 0.3, 0.999]) {
      const { x0, eps } = predictionAffine(type, ab);
      // z-coefficient and output-coefficient of √ᾱ x̂0 + √(1−ᾱ) ε̂ must be (1, 0)
      const cz = Math.sqrt(ab) * x0.z + Math.sqrt(1 - ab) * eps.z;
      const co = Math.sqrt(ab) * x0.out + Math.sqrt(1 - ab) * eps.out;
      assert.ok(Math.abs(cz - 1) < 1e-12 && Math.abs(co) < 1e-12, `${type} ᾱ=${ab}`);
    }
  }
});
