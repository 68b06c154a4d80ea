/**
 * The progress module (cli/progress.ts): ETA by the linear rule, nested tasks whose outer ETA
 * counts the inner progress, JSON lines when stderr is not a terminal, silence with --quiet.
 */
import assert from "node:assert/strict";
import { formatEta, Progress } from "../cli/progress.ts";

function clocked(mode: "json" | "bar" = "json", enabled = true) {
  let t = 0;
  const lines: string[] = [];
  const progress = new Progress({ mode, enabled, now: () => t, write: (l) => lines.push(l) });
  return { progress, lines, advance: (ms: number) => (t += ms) };
}

Deno.test("progress: ETA = elapsed × left / done; unknown before any progress", () => {
  const { progress, advance } = clocked();
  const task = progress.task("cases", 4);
  assert.equal(task.eta(), undefined);
  advance(2000);
  task.tick();
  assert.equal(task.eta(), 6); // 2 s per case, 3 left
  advance(2000);
  task.tick();
  assert.equal(task.eta(), 4);
  assert.equal(formatEta(task.eta()), "4s");
  progress.stop();
});

Deno.test("progress: nested tasks — the outer ETA counts the running inner task", () => {
  const { progress, advance, lines } = clocked();
  const cells = progress.task("cells", 2);
  const steps = progress.solverSteps({ parent: cells, label: "latino" });
  for (let s = 0; s < 4; s++) {
    advance(1000);
    steps.update({ step: s, total: 8, nfe: { unet: s + 1 }, vjp: {}, ms: 1000 });
  }
  // 4 of 8 steps of the first of 2 cells: a quarter done in 4 s → 12 s left; inner: 4 s left
  assert.equal(cells.fraction(), 0.25);
  assert.equal(cells.eta(), 12);
  assert.equal(steps.task!.eta(), 4);
  const last = JSON.parse(lines.at(-1)!);
  assert.deepEqual(
    { event: last.event, label: last.label, step: last.step, total: last.total, eta: last.eta_s },
    { event: "step", label: "latino", step: 3, total: 8, eta: 4 },
  );
  steps.done();
  assert.equal(cells.fraction(), 0, "a finished inner task no longer counts; the outer tick does");
  cells.tick({ cell: "a" });
  assert.equal(cells.fraction(), 0.5);
  const outer = JSON.parse(lines.at(-1)!);
  assert.deepEqual(outer, {
    event: "progress",
    label: "cells",
    done: 1,
    total: 2,
    eta_s: 4,
    cell: "a",
  });
  progress.stop();
});

Deno.test("progress: --quiet prints nothing", () => {
  const { progress, lines } = clocked("json", false);
  const t = progress.task("x", 3);
  t.tick();
  progress.solverSteps().update({ step: 0, total: 2, nfe: {}, vjp: {}, ms: 1 });
  progress.note("stopping after this step…");
  progress.stop();
  assert.deepEqual(lines, []);
});

Deno.test("a solver's step note: a line above the bar on a terminal, a field of the JSON step line", () => {
  const json: string[] = [];
  const p = new Progress({ mode: "json", write: (l) => json.push(l) });
  const steps = p.solverSteps();
  const ev = { step: 0, total: 2, nfe: {}, vjp: {}, ms: 1 };
  steps.update({ ...ev, note: "latino: δ rule builtin/gaussian (…)" });
  steps.update({ ...ev, step: 1 });
  steps.done();
  p.stop();
  assert.equal(json.length, 2);
  assert.equal(JSON.parse(json[0]).note, "latino: δ rule builtin/gaussian (…)");
  assert.equal(JSON.parse(json[1]).note, undefined);
});
