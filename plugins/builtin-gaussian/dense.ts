/**
 * Small dense linear solves (9×9 evidence Newton steps, the read-out's normal equations).
 *
 * @module
 */

/**
 * Solve A x = b (n×n, row-major) by Gaussian elimination with partial pivoting.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { solveDense } from "./closed_form.ts";
 * const x = solveDense([0, 1, 2, 1], [1, 4], 2); // needs a row swap
 * assert.deepEqual([...x], [1.5, 1]);
 * assert.throws(() => solveDense([1, 2, 2, 4], [1, 1], 2), RangeError);
 * ```
 */
export function solveDense(A: ArrayLike<number>, b: ArrayLike<number>, n: number): Float64Array {
  const M = Float64Array.from(A as ArrayLike<number>);
  const x = Float64Array.from(b as ArrayLike<number>);
  for (let col = 0; col < n; col++) {
    let piv = col;
    for (let r = col + 1; r < n; r++) {
      if (Math.abs(M[r * n + col]) > Math.abs(M[piv * n + col])) piv = r;
    }
    if (M[piv * n + col] === 0) throw new RangeError("solveDense: singular matrix");
    if (piv !== col) {
      for (let c = 0; c < n; c++) {
        [M[col * n + c], M[piv * n + c]] = [M[piv * n + c], M[col * n + c]];
      }
      [x[col], x[piv]] = [x[piv], x[col]];
    }
    for (let r = col + 1; r < n; r++) {
      const f = M[r * n + col] / M[col * n + col];
      if (f === 0) continue;
      for (let c = col; c < n; c++) M[r * n + c] -= f * M[col * n + c];
      x[r] -= f * x[col];
    }
  }
  for (let r = n - 1; r >= 0; r--) {
    let s = x[r];
    for (let c = r + 1; c < n; c++) s -= M[r * n + c] * x[c];
    x[r] = s / M[r * n + r];
  }
  return x;
}

/**
 * Solve M x = b for symmetric M by Cholesky; null when M is not positive definite.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { choleskySolve } from "./closed_form.ts";
 * const x = choleskySolve([4, 2, 2, 3], [2, 5], 2)!;
 * assert.ok(Math.abs(x[0] - -0.5) < 1e-15 && Math.abs(x[1] - 2) < 1e-15);
 * assert.equal(choleskySolve([1, 2, 2, 1], [1, 1], 2), null); // indefinite
 * ```
 */
export function choleskySolve(
  M: ArrayLike<number>,
  b: ArrayLike<number>,
  n: number,
): Float64Array | null {
  const Lm = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = M[i * n + j];
      for (let k = 0; k < j; k++) s -= Lm[i * n + k] * Lm[j * n + k];
      if (i === j) {
        if (!(s > 0)) return null;
        Lm[i * n + i] = Math.sqrt(s);
      } else Lm[i * n + j] = s / Lm[j * n + j];
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i];
    for (let k = 0; k < i; k++) s -= Lm[i * n + k] * y[k];
    y[i] = s / Lm[i * n + i];
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i];
    for (let k = i + 1; k < n; k++) s -= Lm[k * n + i] * x[k];
    x[i] = s / Lm[i * n + i];
  }
  return x;
}
