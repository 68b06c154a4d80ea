/**
 * A third-party operator plugin written only against the public API, imported by the package name
 * (`@latent-inverse/toolkit`, as from outside this repository): a smooth, seeded per-pixel gain
 * field, y = g ⊙ x. It is linear and diagonal, so `linearOperator` needs only
 * A, Aᵀ and the exact prox u = (z + γ g y) / (1 + γ g²); it derives the shape checks, the VJP, the
 * bound prox and the rest of the contract.
 *
 * Load it with `--plugin examples/gain_plugin.ts --operator gain:strength=0.5`.
 *
 * @module
 */
import { z } from "zod";
import {
  defineOperator,
  InputError,
  linearOperator,
  type Tensor,
  tensor,
} from "@latent-inverse/toolkit";

/** The gain-field operator plugin. */
export const gainPlugin = defineOperator({
  kind: "operator",
  name: "gain",
  description: "smooth random per-pixel gain field (vignetting-like), y = g ⊙ x",
  options: z.strictObject({
    strength: z.number().min(0).max(0.95).default(0.5).describe("depth of the gain dip (0.5)"),
  }),
  create(options, { shape, rng }) {
    const [, c, h, w] = shape;
    if (h < 2 || w < 2) throw new InputError(`gain: image ${h}×${w} is too small`);
    // g(i,j) = 1 − s·(a·cos(πi/H + φ) + b·cos(πj/W + ψ))²/(a+b)², seeded phases and weights.
    const a = 0.5 + rng.uniform(), b = 0.5 + rng.uniform();
    const phi = Math.PI * rng.uniform(), psi = Math.PI * rng.uniform();
    const gain = tensor(shape);
    for (let k = 0; k < c * h * w; k++) {
      const i = Math.floor(k / w) % h, j = k % w;
      const v = (a * Math.cos(Math.PI * i / h + phi) + b * Math.cos(Math.PI * j / w + psi)) /
        (a + b);
      gain.data[k] = 1 - options.strength * v * v;
    }
    const g = gain.data;
    const mulGain = (t: Tensor) => tensor(shape, t.data.map((v, i) => g[i] * v));
    return linearOperator({
      name: "gain",
      options,
      inputShape: shape,
      outputShape: shape,
      forward: mulGain,
      adjoint: mulGain,
      prox: (z, y, gamma) =>
        tensor(
          shape,
          z.data.map((v, i) => (v + gamma * g[i] * y.data[i]) / (1 + gamma * g[i] ** 2)),
        ),
      pseudoInverse: mulGain,
      artifacts: () => ({ gain }),
    });
  },
});

/** What `--plugin` loads. */
export default [gainPlugin];
