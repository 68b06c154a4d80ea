/**
 * A third-party operator plugin written only against the public API (`mod.ts`): a smooth,
 * seeded per-pixel gain field, y = g ⊙ x. It is linear and diagonal, so its prox is exact:
 * u = (z + γ g y) / (1 + γ g²).
 *
 * Load it with `--plugin examples/gain_plugin.ts --operator gain:strength=0.5`.
 *
 * @module
 */
import { z } from "zod";
import {
  assertShape,
  defineOperator,
  type ForwardOperator,
  InputError,
  type Tensor,
  tensor,
} from "../mod.ts";

/** The gain-field operator plugin. */
export const gainPlugin = defineOperator({
  kind: "operator",
  name: "gain",
  description: "smooth random per-pixel gain field (vignetting-like), y = g ⊙ x",
  options: z.strictObject({
    strength: z.number().min(0).max(0.95).default(0.5),
  }),
  create(options, { shape, rng }): ForwardOperator {
    const [, c, h, w] = shape;
    if (h < 2 || w < 2) throw new InputError(`gain: image ${h}×${w} is too small`);
    // g(i,j) = 1 − s·(a·cos(πi/H + φ) + b·cos(πj/W + ψ))²/(a+b)², seeded phases and weights.
    const a = 0.5 + rng.uniform(), b = 0.5 + rng.uniform();
    const phi = Math.PI * rng.uniform(), psi = Math.PI * rng.uniform();
    const gain = tensor(shape);
    for (let k = 0; k < c; k++) {
      for (let i = 0; i < h; i++) {
        for (let j = 0; j < w; j++) {
          const v = (a * Math.cos(Math.PI * i / h + phi) + b * Math.cos(Math.PI * j / w + psi)) /
            (a + b);
          gain.data[(k * h + i) * w + j] = 1 - options.strength * v * v;
        }
      }
    }
    const g = gain.data;
    const mulGain = (t: Tensor, what: string): Promise<Tensor> => {
      assertShape(t, shape, what);
      const out = tensor(shape);
      for (let i = 0; i < g.length; i++) out.data[i] = g[i] * t.data[i];
      return Promise.resolve(out);
    };
    return {
      name: "gain",
      options,
      inputShape: [...shape],
      outputShape: [...shape],
      capabilities: { linear: true, closedFormProx: true, differentiable: true },
      forward: (x) => mulGain(x, "gain: x"),
      adjoint: (y) => mulGain(y, "gain: y"),
      vjp: (_x, grad) => mulGain(grad, "gain: cotangent"),
      proxL2(zt, y, gamma) {
        assertShape(zt, shape, "gain: z");
        assertShape(y, shape, "gain: y");
        const out = tensor(shape);
        for (let i = 0; i < g.length; i++) {
          out.data[i] = (zt.data[i] + gamma * g[i] * y.data[i]) / (1 + gamma * g[i] * g[i]);
        }
        return Promise.resolve(out);
      },
      pseudoInverse: (y) => mulGain(y, "gain: y").then((t) => t),
      artifacts: () => ({ gain }),
    };
  },
});

/** What `--plugin` loads. */
export default [gainPlugin];
