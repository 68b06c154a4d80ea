/**
 * `report.html`: one static page — tables, image grids, per-step residual plots and the run's
 * configuration — that opens from disk in any browser. No script, no font or style sheet from
 * elsewhere: CSS and the plots (SVG) are inline; the grids are the run folder's PNGs referenced by
 * relative paths, so the folder can be moved or archived whole.
 *
 * The plots are hand-written SVG polylines (a few dozen lines); a charting library would bring a
 * script and a canvas for what is one static line chart per table.
 *
 * @module
 */
import {
  columnGroups,
  columnTitle,
  detailTable,
  fmtDelta,
  fmtEstimate,
  methodTitle,
  rankedMetrics,
  runLine,
  shownMethods,
  type Summary,
} from "./summary.ts";

/** A grid image of the report. */
export interface ReportGrid {
  /** Relative path of the PNG. */
  file: string;
  /** Image name. */
  image: string;
  /** Operator label. */
  operator: string;
  /** σ_y. */
  noise: number;
  /** Seed shown. */
  seed: number;
  /** Pixel size of the PNG. */
  width: number;
  /** Pixel height. */
  height: number;
}

/** Mean log₁₀ residual per step of one method in one (operator, σ_y). */
export interface ResidualCurve {
  /** Method label. */
  method: string;
  /** Operator label. */
  operator: string;
  /** σ_y. */
  noise: number;
  /** Mean over cells of log₁₀ ‖A x_k − y‖, per step k. */
  log10: number[];
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

function table(header: string[], rows: string[][], bold?: boolean[][], cls = ""): string {
  const th = header.map((h) => `<th>${esc(h)}</th>`).join("");
  const body = rows.map((r, i) =>
    `<tr>${
      r.map((c, j) => `<td>${bold?.[i]?.[j] ? `<b>${esc(c)}</b>` : esc(c)}</td>`).join("")
    }</tr>`
  ).join("\n");
  return `<table${
    cls ? ` class="${cls}"` : ""
  }><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const COLOURS = [
  "#1f77b4",
  "#d62728",
  "#2ca02c",
  "#9467bd",
  "#ff7f0e",
  "#17becf",
  "#8c564b",
  "#e377c2",
];

/** An SVG line chart of mean log₁₀ residual per step. */
export function residualPlot(curves: ResidualCurve[], noise: number): string {
  const W = 560, H = 260, ml = 56, mr = 150, mt = 14, mb = 36;
  const pw = W - ml - mr, ph = H - mt - mb;
  const all = curves.flatMap((c) => c.log10.filter(Number.isFinite));
  if (!all.length) return "";
  const lo = Math.floor(Math.min(...all));
  const hi = Math.max(lo + 1, Math.ceil(Math.max(...all)));
  const steps = Math.max(...curves.map((c) => c.log10.length));
  const X = (k: number) => ml + (steps <= 1 ? pw / 2 : (k * pw) / (steps - 1));
  const Y = (v: number) => mt + ph - ((v - lo) / (hi - lo)) * ph;
  const parts: string[] = [
    `<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" ` +
    `viewBox="0 0 ${W} ${H}" role="img" aria-label="residual per step">`,
    `<rect x="${ml}" y="${mt}" width="${pw}" height="${ph}" fill="#fafafa" stroke="#bbb"/>`,
  ];
  for (let e = lo; e <= hi; e++) {
    parts.push(
      `<line x1="${ml}" x2="${ml + pw}" y1="${Y(e)}" y2="${Y(e)}" stroke="#e4e4e4"/>`,
      `<text x="${ml - 6}" y="${Y(e) + 4}" text-anchor="end" font-size="11">1e${e}</text>`,
    );
  }
  for (let k = 0; k < steps; k++) {
    parts.push(
      `<text x="${X(k)}" y="${mt + ph + 15}" text-anchor="middle" font-size="11">${k + 1}</text>`,
    );
  }
  parts.push(
    `<text x="${ml + pw / 2}" y="${H - 4}" text-anchor="middle" font-size="12">step</text>`,
    `<text x="14" y="${mt + ph / 2}" font-size="12" transform="rotate(-90 14 ${mt + ph / 2})" ` +
      `text-anchor="middle">‖Ax−y‖ (σ=${noise})</text>`,
  );
  curves.forEach((c, i) => {
    const col = COLOURS[i % COLOURS.length];
    const pts = c.log10.map((
      v,
      k,
    ) => (Number.isFinite(v) ? `${X(k).toFixed(1)},${Y(v).toFixed(1)}` : ""))
      .filter((p) => p).join(" ");
    parts.push(
      `<polyline points="${pts}" fill="none" stroke="${col}" stroke-width="2"/>`,
      `<rect x="${ml + pw + 12}" y="${mt + 6 + i * 18}" width="12" height="3" fill="${col}"/>`,
      `<text x="${ml + pw + 28}" y="${mt + 11 + i * 18}" font-size="11">${
        esc(c.method.slice(0, 22))
      }</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("");
}

const CSS = `
body{font:14px/1.45 "DejaVu Sans",system-ui,sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;color:#1b1b1b;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px;margin-top:24px}
table{border-collapse:collapse;margin:8px 0 16px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d0d0;padding:3px 8px;text-align:right;white-space:nowrap}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
tr.baseline td{color:#555;font-style:italic}
.wrap{overflow-x:auto}
figure{margin:12px 0}figure img{max-width:100%;height:auto;border:1px solid #ccc}
figcaption{color:#444;font-size:13px}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}
.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:6px 10px}
.muted{color:#666}
`;

/** Render the page. */
export function renderHtml(
  s: Summary,
  grids: ReportGrid[],
  curves: ResidualCurve[],
  command: string[],
): string {
  const c = s.config;
  const out: string[] = [];
  out.push(
    `<!doctype html>`,
    `<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">`,
    `<title>Comparison: ${esc(runLine(s))}</title><style>${CSS}</style></head><body>`,
    `<h1>Comparison: ${esc(runLine(s))}</h1>`,
  );
  const counts = s.groups.reduce(
    (a, g) => [a[0] + g.counts.ok, a[1] + g.counts.failed, a[2] + g.counts.skipped],
    [0, 0, 0],
  );
  out.push(
    `<p>Prior <code>${esc(c.prior.spec)}</code>${
      s.models.length
        ? ` (model sha256 ${
          esc([...new Set(s.models.map((m) => m.sha256?.slice(0, 16) ?? "unknown"))].join(", "))
        }…)`
        : ""
    }; device ${esc(c.device)}${s.providers.length ? ` → ${esc(s.providers.join(", "))}` : ""}. ` +
      `${s.cells.present} of ${s.cells.expected} cells: ${counts[0]} ok, ${counts[1]} failed, ` +
      `${counts[2]} skipped.</p>`,
    `<p class="muted">Mean ± standard error over images (each image's seeds averaged first); best ` +
      `solver per column in bold; baselines (no model) in italics. Images on [0,1], data range 1.</p>`,
  );
  if (s.cells.present < s.cells.expected) {
    out.push(`<p class="warn">${s.cells.expected - s.cells.present} cells have not run yet.</p>`);
  }
  for (const w of s.warnings) out.push(`<p class="warn">${esc(w)}</p>`);

  const ranked = rankedMetrics(s);
  const methods = shownMethods(s);
  if (ranked.length && s.columns.length) {
    out.push(`<h2 id="quality">Quality</h2><div class="wrap">`);
    const head1 = `<tr><th rowspan="2">method</th>${
      s.columns.map((col) => `<th colspan="${ranked.length}">${esc(columnTitle(col))}</th>`).join(
        "",
      )
    }</tr>`;
    const head2 = `<tr>${
      s.columns.map(() => ranked.map((m) => `<th>${esc(m.title)}</th>`).join("")).join("")
    }</tr>`;
    const rows = methods.map((m) => {
      const tds = s.columns.map((col) => {
        const g = s.groups.find((x) =>
          x.method.label === m.label && x.operator === col.operator && x.noise === col.noise
        );
        return ranked.map((def) => {
          const v = esc(fmtEstimate(g?.metrics[def.key], def.digits));
          return `<td>${g?.best.has(def.key) ? `<b>${v}</b>` : v}</td>`;
        }).join("");
      }).join("");
      return `<tr${m.kind === "baseline" ? ` class="baseline"` : ""}><td>${
        esc(methodTitle(m))
      }</td>${tds}</tr>`;
    });
    out.push(
      `<table id="quality-table"><thead>${head1}${head2}</thead><tbody>${
        rows.join("\n")
      }</tbody></table></div>`,
    );
    const others = methods.filter((m) => m.label !== c.reference);
    if (others.length && methods.some((m) => m.label === c.reference)) {
      out.push(`<h2 id="delta">Paired difference vs <code>${esc(c.reference)}</code></h2>`);
      out.push(
        `<p class="muted">Δ = method − reference per (image, seed), averaged over seeds, then mean ± s.e. over images.</p><div class="wrap">`,
      );
      const header = [
        "method",
        ...s.columns.flatMap((col) => ranked.map((m) => `${columnTitle(col)} Δ${m.title}`)),
      ];
      const rows2 = others.map((m) => [
        methodTitle(m),
        ...s.columns.flatMap((col) => {
          const g = s.groups.find((x) =>
            x.method.label === m.label && x.operator === col.operator && x.noise === col.noise
          );
          return ranked.map((def) => fmtDelta(g?.deltas[def.key], def.digits));
        }),
      ]);
      out.push(table(header, rows2), `</div>`);
    }
  }

  out.push(`<h2 id="details">Per operator and noise level</h2>`);
  for (const col of s.columns) {
    const gs = columnGroups(s, col);
    if (!gs.length) continue;
    out.push(`<h3>${esc(col.operator)}, σ<sub>y</sub> = ${col.noise}</h3><div class="wrap">`);
    const t = detailTable(s, gs);
    const plain = t.rows.map((r) => r.map((v) => v.replace(/^\*\*(.*)\*\*$/, "$1")));
    out.push(table(t.header, plain, t.bold), `</div>`);
    const cv = curves.filter((x) => x.operator === col.operator && x.noise === col.noise);
    if (cv.length) {
      out.push(
        `<figure>${
          residualPlot(cv, col.noise)
        }<figcaption>Residual ‖A x<sub>k</sub> − y‖ after each step (geometric mean over cells).</figcaption></figure>`,
      );
    }
    for (const g of grids.filter((x) => x.operator === col.operator && x.noise === col.noise)) {
      out.push(
        `<figure class="grid"><img src="${esc(g.file)}" width="${g.width}" height="${g.height}" ` +
          `alt="${esc(`${g.image} · ${g.operator} · σ=${g.noise}`)}">` +
          `<figcaption>${
            esc(g.image)
          } · seed ${g.seed}: clean | measurement | methods</figcaption></figure>`,
      );
    }
  }

  if (s.failures.length) {
    out.push(`<h2 id="failures">Failed cells</h2><div class="wrap">`);
    out.push(
      table(
        ["method", "operator", "σ_y", "image", "seed", "error"],
        s.failures.map((
          r,
        ) => [
          r.method.label,
          r.operator.label,
          String(r.noise),
          r.image.name,
          String(r.seed),
          r.error ?? "",
        ]),
      ),
      `</div>`,
    );
  }
  out.push(
    `<h2 id="config">Configuration</h2>`,
    `<p>Command: <code>${esc(command.join(" "))}</code></p>`,
    `<pre>${esc(JSON.stringify(c, null, 2))}</pre>`,
    `</body></html>`,
  );
  return out.join("\n") + "\n";
}
