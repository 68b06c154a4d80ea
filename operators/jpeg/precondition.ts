/**
 * The preconditioner both JPEG proxes use: an SPD approximation of (I + Eᵀ M E)⁻¹ for the image
 * Hessians of the form
 *
 *   H = I + Eᵀ M E,   M = diag(m) ≥ 0 per coded DCT coefficient,
 *
 * with E the encoder's linear part (colour, replicate padding, 4:2:0 averaging, block DCT).
 *
 * In YCbCr level coordinates w = K u (K = 255·C, C the colour matrix), E = S K with S the spatial
 * part, and H_w = G + Sᵀ M S with G = (KKᵀ)⁻¹. Write a_k = Padᵀ Rᵀ Bᵀ e_k for the atom of
 * coefficient k (B block DCT, R = I, or 2× the 2×2 average for 4:2:0 chroma, whose coefficient is
 * then ξ = 2c; Pad replicate padding) and keep only G's diagonal g_p: the planes decouple into
 * g_p (I + Σ_k m'_k a_k a_kᵀ), with the normalised stiffness m'_k = f m_k / g_p (f = 1, or ¼ for
 * 4:2:0 chroma). With Woodbury
 *
 *   H_w⁻¹ ≈ ⊕_p (I − Σ_k σ_k a_k a_kᵀ) / g_p,   σ_k = m'_k / (1 + m'_k μ_k),
 *
 * exact when the atoms are
 * orthonormal (interior blocks, μ = 1); on edge blocks μ_k is a Gershgorin bound of AᵀA (see
 * {@link paddingRowSums}), which keeps P positive definite. Then P = K⁻¹ H_w⁻¹ K⁻ᵀ (the factors 255
 * cancel). Dropping G's off-diagonal terms costs at most a factor of 2 (P at M = 0 has eigenvalues
 * 0.51–1.56 instead of 1); CG corrects the rest.
 *
 * @module
 */
import { type Geometry, PLANE_WEIGHT, YCC2RGB } from "./colour.ts";
import { DCT8 } from "./quantise.ts";
import { codedPlanes, codedSize, spatialAdjoint, spatialForward } from "./linear.ts";

/**
 * The factor f / g_p that turns a stiffness m of plane k's coded coefficients (H = I + Eᵀ diag(m) E,
 * E in levels per unit image value) into the normalised stiffness the preconditioner takes.
 */
export function normalisedStiffness(g: Geometry, k: number): number {
  return (k > 0 && g.sub ? 0.25 : 1) * 255 * 255 / PLANE_WEIGHT[k];
}

/**
 * Gershgorin row sums ρ of M = A Aᵀ for the last 8-block along one axis, where A = B₈ R P maps a
 * source line of length L to the 8 DCT coefficients of that block (P: replicate padding to k·Lc,
 * R: sums of k consecutive samples divided by √k, so R has orthonormal rows). ρ = 1 elsewhere.
 * Replicate padding makes the edge pixels count several times, so M ≠ I on edge blocks.
 */
export function paddingRowSums(L: number, Lc: number, k: number): Float64Array {
  const rho = new Float64Array(Lc).fill(1);
  if (k * Lc === L) return rho;
  const b0 = Lc - 8;
  const r1 = Array.from({ length: 8 }, () => new Float64Array(L));
  for (let i = 0; i < 8; i++) {
    for (let t = 0; t < k; t++) r1[i][Math.min(k * (b0 + i) + t, L - 1)] += 1 / Math.sqrt(k);
  }
  const a = Array.from({ length: 8 }, (_, f) => {
    const row = new Float64Array(L);
    for (let i = 0; i < 8; i++) for (let c = 0; c < L; c++) row[c] += DCT8[f * 8 + i] * r1[i][c];
    return row;
  });
  for (let f = 0; f < 8; f++) {
    let sum = 0;
    for (let f2 = 0; f2 < 8; f2++) {
      let m = 0;
      for (let c = 0; c < L; c++) m += a[f][c] * a[f2][c];
      sum += Math.abs(m);
    }
    rho[b0 + f] = sum;
  }
  return rho;
}

/**
 * P ≈ (I + Eᵀ diag(m) E)⁻¹ for one image geometry (see the module doc), with every buffer allocated
 * once: {@link WoodburyPreconditioner.set} takes new stiffnesses, {@link WoodburyPreconditioner.apply}
 * applies P.
 */
export class WoodburyPreconditioner {
  readonly #g: Geometry;
  /** Gershgorin row sums per plane (rows, columns). */
  readonly #rho: [Float64Array, Float64Array][];
  /** σ per coded coefficient, in c-units (S_ξᵀ σ S_ξ = 4 S_cᵀ σ S_c for 4:2:0 chroma, ξ = 2c). */
  readonly #sigma: Float64Array[];
  readonly #planes: Float64Array[];
  readonly #back: Float64Array;
  readonly #coded: Float64Array[];

  /** Allocate for one geometry (P = I until {@link set} is called). */
  constructor(g: Geometry) {
    const { h, w } = g, n = h * w;
    this.#g = g;
    this.#rho = [0, 1, 2].map((k) => {
      const sub = k > 0 && g.sub, [ph, pw] = codedSize(g, k);
      return [paddingRowSums(h, ph, sub ? 2 : 1), paddingRowSums(w, pw, sub ? 2 : 1)];
    });
    this.#sigma = codedPlanes(g);
    this.#planes = [0, 1, 2].map(() => new Float64Array(n));
    this.#back = new Float64Array(n);
    this.#coded = codedPlanes(g);
  }

  /**
   * Set the normalised stiffness m' = f m / g_p of every coded coefficient of each plane (Y, Cb,
   * Cr), or m' = scale[k]·stiffness[k] when `scale` is given (see {@link normalisedStiffness}).
   */
  set(stiffness: Float64Array[], scale?: number[]): this {
    const g = this.#g;
    for (let k = 0; k < 3; k++) {
      const [ph, pw] = codedSize(g, k), [rhoR, rhoC] = this.#rho[k];
      const mk = stiffness[k], out = this.#sigma[k], f = k > 0 && g.sub ? 4 : 1;
      const s = scale ? scale[k] : 1;
      for (let i = 0; i < ph; i++) {
        const ri = rhoR[i];
        for (let j = 0; j < pw; j++) {
          const idx = i * pw + j, m = s * mk[idx];
          out[idx] = f * m / (1 + m * ri * rhoC[j]);
        }
      }
    }
    return this;
  }

  /** P v, written to `out` (default fresh; it may not alias `v`). */
  apply(v: Float64Array, out: Float64Array = new Float64Array(v.length)): Float64Array {
    const g = this.#g, n = g.h * g.w, planes = this.#planes, back = this.#back;
    const [c0, c1, c2] = YCC2RGB;
    // w = C⁻ᵀ v (columns of C⁻¹).
    for (let k = 0; k < 3; k++) {
      const pk = planes[k], a = c0[k], b = c1[k], d = c2[k];
      for (let i = 0; i < n; i++) pk[i] = a * v[i] + b * v[n + i] + d * v[2 * n + i];
    }
    // (I − S_kᵀ σ S_k) / g_k per plane, in place.
    for (let k = 0; k < 3; k++) {
      const pk = planes[k], ck = spatialForward(pk, k, g, this.#coded[k]), sg = this.#sigma[k];
      for (let i = 0; i < ck.length; i++) ck[i] *= sg[i];
      spatialAdjoint(ck, k, g, back);
      const inv = 1 / PLANE_WEIGHT[k];
      for (let i = 0; i < n; i++) pk[i] = (pk[i] - back[i]) * inv;
    }
    // P v = C⁻¹ w'.
    const [py, pb, pr] = planes;
    for (let r = 0; r < 3; r++) {
      const m = YCC2RGB[r], o = r * n;
      for (let i = 0; i < n; i++) out[o + i] = m[0] * py[i] + m[1] * pb[i] + m[2] * pr[i];
    }
    return out;
  }
}

/**
 * v ↦ P v ≈ (I + Eᵀ diag(m) E)⁻¹ v for one image: a fresh {@link WoodburyPreconditioner} set to the
 * normalised stiffness `stiffness` (see {@link normalisedStiffness}).
 */
export function woodburyPreconditioner(
  g: Geometry,
  stiffness: Float64Array[],
): (v: Float64Array, out?: Float64Array) => Float64Array {
  const p = new WoodburyPreconditioner(g).set(stiffness);
  return (v, out) => p.apply(v, out);
}
