/**
 * The GPU check script stays ready to run: on the CPU (`--device cpu`) it builds every graph it
 * checks, probes ORT's `disable_cpu_ep_fallback`, reads the profile's node placements and times
 * forward vs forward+VJP — all nodes are then on the CPU, which is reported, not failed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, task } from "./subprocess.ts";

Deno.test("gpu-check runs end to end on the CPU (placements from the profile, timings, JSON)", async () => {
  const dir = `bench-results/test-${crypto.randomUUID()}`;
  try {
    const out = `${dir}/gpu.json`;
    const r = await task(
      "gpu-check",
      "--device",
      "cpu",
      "--sizes",
      "8",
      "--runs",
      "1",
      "--out",
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(await Deno.readTextFile(join(ROOT, out)));
    assert.equal(report.results.length, 3);
    for (const c of report.results) {
      assert.ok(c.nodes.total > 10, `${c.name}: ${c.nodes.total} nodes profiled`);
      assert.equal(c.nodes.device, c.nodes.total); // --device cpu: every node on its provider
      assert.equal(c.fallbackOption.vjpCreated, false); // CPU nodes refused without fallback
      assert.ok(c.ratio > 0);
    }
    assert.equal(report.failed, false);
  } finally {
    await Deno.remove(join(ROOT, dir), { recursive: true }).catch(() => {});
    await Deno.remove(join(ROOT, "bench-results")).catch(() => {}); // only when left empty
  }
});
