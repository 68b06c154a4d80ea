/**
 * The statistics of `compare`'s tables on crafted rows (seeds averaged per image, then mean ± s.e.
 * over images; paired differences per (image, seed)), and the deterministic split into shards.
 */
import assert from "node:assert/strict";
import { planCells, shardCells } from "../cli/compare/cells.ts";
import type { CompareConfig } from "../cli/compare/config.ts";
import type { CellRow } from "../cli/compare/results.ts";
import { renderCsv, renderMarkdown, summarize } from "../cli/compare/summary.ts";

function config(): CompareConfig {
  const method = (label: string, kind: "solver" | "baseline" = "solver") => ({
    kind,
    label,
    name: label,
    options: {},
  });
  return {
    format: "latent-inverse/compare@1",
    toolkit: "test",
    methods: [method("a"), method("b"), method("pseudo-inverse", "baseline")],
    operators: [{ label: "blur", name: "blur", options: {} }],
    noise: [0.01],
    seeds: [0, 1],
    images: ["i0", "i1", "i2"].map((name) => ({
      name,
      sha256: name,
      shape: [1, 3, 8, 8],
      source: name,
    })),
    crop: null,
    prior: { spec: "builtin", name: "builtin", options: {} },
    prompt: null,
    device: "cpu",
    reference: "a",
    exact: { tol: 1e-6, max_iter: 10 },
    lpips: null,
    fid: null,
    plugins: [],
    excluded: [],
  };
}

/** PSNR of method m on image i, seed s. */
const PSNR: Record<string, number[][]> = {
  a: [[20, 22], [30, 30], [25, 27]],
  b: [[21, 23], [31, 33], [25, 28]],
  "pseudo-inverse": [[40, 40], [40, 40], [40, 40]],
};

function rows(c: CompareConfig): CellRow[] {
  return planCells(c).map((cell) =>
    ({
      key: cell.key,
      method: cell.method,
      operator: c.operators[0],
      noise: 0.01,
      image: c.images[cell.image],
      seed: cell.seed,
      status: "ok",
      metrics: { psnr: PSNR[cell.method.label][cell.image][cell.seed] },
      nfe: { unet: 2 },
      prior: { spec: "builtin", name: "builtin", sha256: "x" },
      provider: "cpu",
      timing: { wall_ms: 1000, peak_rss_mb: 100 },
    }) as unknown as CellRow
  );
}

Deno.test("summary: seeds averaged per image, mean ± s.e. over images, paired Δ, best solver", () => {
  const c = config();
  const s = summarize(c, rows(c), 18);
  const a = s.groups.find((g) => g.method.label === "a")!;
  const b = s.groups.find((g) => g.method.label === "b")!;
  // a: per image 21, 30, 26 → mean 77/3; sd² = ((21−m)² + (30−m)² + (26−m)²)/2.
  const m = 77 / 3;
  const sd = Math.sqrt(((21 - m) ** 2 + (30 - m) ** 2 + (26 - m) ** 2) / 2);
  assert.ok(Math.abs(a.metrics.psnr!.mean - m) < 1e-12);
  assert.ok(Math.abs(a.metrics.psnr!.se - sd / Math.sqrt(3)) < 1e-12);
  // b − a per (image, seed): [1,1], [1,3], [0,1] → per image 1, 2, 0.5.
  const d = [1, 2, 0.5], dm = 3.5 / 3;
  const dsd = Math.sqrt(d.reduce((t, v) => t + (v - dm) ** 2, 0) / 2);
  assert.ok(Math.abs(b.deltas.psnr!.mean - dm) < 1e-12);
  assert.ok(Math.abs(b.deltas.psnr!.se - dsd / Math.sqrt(3)) < 1e-12);
  assert.equal(a.deltas.psnr, undefined); // the reference itself
  // Best solver in bold: b; the baseline (higher still) is not ranked.
  assert.ok(b.best.has("psnr") && !a.best.has("psnr"));
  assert.equal(s.groups.find((g) => g.method.kind === "baseline")!.best.size, 0);
  const md = renderMarkdown(s);
  assert.match(md, new RegExp(`\\*\\*${b.metrics.psnr!.mean.toFixed(2)} ± `));
  assert.match(md, /\| \*pseudo-inverse\* \| 40\.00 ± 0\.00 \|/);
  assert.match(renderCsv(s), /^b,solver,blur,0\.01,3,6,6,0,0,26\.8333/m);
  assert.equal(a.nfe, 2);
  assert.equal(a.seconds, 1);
});

Deno.test("summary: failed cells are counted and listed, not averaged", () => {
  const c = config();
  const rs = rows(c);
  const bad = rs.find((r) => r.method.label === "b" && r.image.name === "i1" && r.seed === 1)!;
  bad.status = "failed";
  bad.error = "boom";
  bad.metrics = {};
  const s = summarize(c, rs, 18);
  const b = s.groups.find((g) => g.method.label === "b")!;
  assert.deepEqual(b.counts, { cells: 6, ok: 5, failed: 1, skipped: 0, images: 3 });
  // i1 now has only seed 0 (31): per image 22, 31, 26.5.
  assert.ok(Math.abs(b.metrics.psnr!.mean - (22 + 31 + 26.5) / 3) < 1e-12);
  assert.equal(s.failures.length, 1);
  assert.match(renderMarkdown(s), /## Failed cells[\s\S]*boom/);
});

Deno.test("shards: every cell in exactly one shard, whole measurement groups, fixed by the configuration", () => {
  const c = config();
  const cells = planCells(c);
  assert.equal(cells.length, 18);
  for (const n of [1, 2, 4, 7]) {
    const parts = Array.from({ length: n }, (_, i) => shardCells(cells, { index: i, count: n }));
    const keys = parts.flat().map((x) => x.key).sort();
    assert.deepEqual(keys, cells.map((x) => x.key).sort());
    for (const p of parts) {
      for (const cell of p) {
        // The other methods of its measurement are in the same shard.
        const group = cells.filter((x) => x.measurementKey === cell.measurementKey);
        assert.ok(group.every((g) => p.includes(g)));
      }
    }
    assert.deepEqual(
      parts,
      Array.from({ length: n }, (_, i) => shardCells(planCells(config()), { index: i, count: n })),
    );
  }
});
