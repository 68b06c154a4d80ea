/**
 * The toolkit's one conjugate-gradient iteration (`core/linalg/cg.ts`): its two drivers agree bit for
 * bit, caller-owned work vectors are used and checked, and the per-iteration hook sees the updates.
 */
import assert from "node:assert/strict";
import { cgWork, conjugateGradient, conjugateGradientSync, jacobi } from "../core/linalg/cg.ts";
import { streams } from "../core/rng.ts";

/** M = BᵀB + I (n×n, dense, SPD) and a right-hand side, from a seeded stream. */
function system(n: number) {
  const rng = streams(3).get("cg-test");
  const bm = Float64Array.from({ length: n * n }, () => rng.normal() / Math.sqrt(n));
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = i === j ? 1 : 0;
      for (let k = 0; k < n; k++) s += bm[k * n + i] * bm[k * n + j];
      m[i * n + j] = s;
    }
  }
  // v ↦ M v into one buffer per function (the contract allows returning the same buffer).
  const matvec = () => {
    const out = new Float64Array(n);
    return (v: Float64Array) => {
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let j = 0; j < n; j++) s += m[i * n + j] * v[j];
        out[i] = s;
      }
      return out;
    };
  };
  const apply = matvec(), check = matvec();
  const diag = Float64Array.from({ length: n }, (_, i) => m[i * n + i]);
  const b = Float64Array.from({ length: n }, () => rng.normal());
  const x0 = Float64Array.from({ length: n }, () => rng.normal());
  return { apply, check, diag, b, x0 };
}

Deno.test("cg: the synchronous and asynchronous drivers run the same iteration, bit for bit", async () => {
  const { apply, check, diag, b, x0 } = system(40);
  for (const precondition of [undefined, jacobi(diag)]) {
    for (const start of [undefined, x0]) {
      const opts = { tol: 1e-10, maxIter: 100, precondition, x0: start };
      const a = await conjugateGradient((v) => Promise.resolve(apply(v)), b, opts);
      const s = conjugateGradientSync(apply, b, opts);
      assert.deepEqual([...s.x], [...a.x]);
      assert.equal(s.iterations, a.iterations);
      assert.equal(s.relResidual, a.relResidual);
      assert.equal(s.stop, "tolerance");
      // The solution solves M x = b.
      const mx = check(s.x);
      const err = Math.hypot(...mx.map((v, i) => v - b[i])) / Math.hypot(...b);
      assert.ok(err < 1e-9, `residual ${err}`);
    }
  }
});

Deno.test("cg: caller-owned work vectors hold the result and are reused; bad ones are refused", () => {
  const { apply, diag, b, x0 } = system(30);
  const precondition = jacobi(diag);
  const fresh = conjugateGradientSync(apply, b, { tol: 1e-10, precondition });
  const work = cgWork(b.length);
  work.x.fill(7); // stale contents from an earlier solve must not leak in
  for (let k = 0; k < 2; k++) {
    const r = conjugateGradientSync(apply, b, { tol: 1e-10, precondition, work });
    assert.equal(r.x, work.x);
    assert.deepEqual([...r.x], [...fresh.x]);
  }
  const warm = conjugateGradientSync(apply, b, { tol: 1e-10, precondition, x0, work });
  assert.deepEqual(
    [...warm.x],
    [...conjugateGradientSync(apply, b, { tol: 1e-10, precondition, x0 }).x],
  );
  assert.throws(
    () => conjugateGradientSync(apply, b, { precondition, work: cgWork(b.length, false) }),
    /work\.z must have length 30/,
  );
  assert.throws(
    () => conjugateGradientSync(apply, b, { work: cgWork(b.length + 1) }),
    /work\.x must have length 30, got 31/,
  );
  assert.throws(
    () => conjugateGradientSync(apply, b, { work: { ...cgWork(b.length), r: b } }),
    /work\.r must not be b/,
  );
});

Deno.test("cg: onStep sees every update, so a linear image of x can be accumulated alongside", () => {
  const { apply, check, diag, b } = system(25);
  // Accumulate c = Σ α p along the iterates (the identity as "B"); it must end equal to x, and
  // the hook must run once per iteration with the M p of that iteration.
  const c = new Float64Array(b.length);
  let calls = 0;
  const r = conjugateGradientSync(apply, b, {
    tol: 1e-10,
    precondition: jacobi(diag),
    onStep: (alpha, p, mp) => {
      calls++;
      const ap = check(p);
      assert.ok(ap.every((v, i) => Math.abs(v - mp[i]) <= 1e-12 * (1 + Math.abs(v))));
      for (let i = 0; i < c.length; i++) c[i] += alpha * p[i];
    },
  });
  assert.equal(calls, r.iterations);
  assert.ok(r.x.every((v, i) => Math.abs(v - c[i]) <= 1e-12 * (1 + Math.abs(v))));
});
