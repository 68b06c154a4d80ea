/**
 * The pipeline prior reports its family from its config files and UNet inputs (never its folder
 * name), `family=` overrides it, and LATINO's automatic δ presets follow the family.
 */
import assert from "node:assert/strict";
import { DiffusersPrior, memoryFiles } from "../core/pipeline/mod.ts";
import { autoPreset } from "../solvers/latino.ts";
import { buildExactModelFiles } from "../plugins/builtin-gaussian/emit.ts";
import { LCM_SCHEDULER, pipelineFiles, type PipelineSpec } from "./diffusers_fixtures.ts";

const SDXL: PipelineSpec = {
  unet: { timestep: "f32-scalar", ehsDim: 20, pooledDim: 12 },
  text: { ids: "int64", dim: 8, layers: 2 },
  text2: { ids: "int64", dim: 12, layers: 3, projection: true, salt: 1 },
};

async function familyOf(name: string, spec: PipelineSpec, family?: "sdxl-lcm") {
  const prior = await DiffusersPrior.load(memoryFiles(name, pipelineFiles(spec)), {
    device: "cpu",
    family,
  });
  return prior.family;
}

Deno.test("family from the configs: sd, sd-lcm, sdxl, sdxl-dmd2 (whatever the folder is called)", async () => {
  // Folder names that would fool a regex on the name ("xl", "dmd", "lcm") on purpose.
  assert.equal((await familyOf("my-sdxl-dmd2", {})).id, "sd");
  const lcm = await familyOf("xl", {
    scheduler: LCM_SCHEDULER,
    unet: { timestep: "i64-batch", ehsDim: 8, timeCondDim: 4 },
    unetConfig: { in_channels: 4, sample_size: 2, time_cond_proj_dim: 4 },
  });
  assert.equal(lcm.id, "sd-lcm");
  assert.match(lcm.evidence, /timestep_cond/);
  assert.equal((await familyOf("lcm", { ...SDXL })).id, "sdxl");
  const dmd2 = await familyOf("sd15", { ...SDXL, scheduler: LCM_SCHEDULER });
  assert.equal(dmd2.id, "sdxl-dmd2");
  assert.match(dmd2.evidence, /LCMScheduler/);
  assert.match(dmd2.evidence, /family=sdxl-lcm/, "says what the files cannot tell apart");
  const forced = await familyOf("sd15", { ...SDXL, scheduler: LCM_SCHEDULER }, "sdxl-lcm");
  assert.equal(forced.id, "sdxl-lcm");
  assert.match(forced.evidence, /set by family= \(the config files say sdxl-dmd2\)/);
});

Deno.test("family of the built-in exact model, even when its folder is renamed", async () => {
  const files = buildExactModelFiles({ imageShape: [1, 3, 16, 16] });
  const prior = await DiffusersPrior.load(memoryFiles("an-sdxl-folder", files), { device: "cpu" });
  assert.equal(prior.family.id, "builtin");
});

Deno.test("LATINO auto presets follow the family", () => {
  const blur = { name: "blur", options: { kernel: "gaussian" } };
  const cases: [string, string][] = [
    ["builtin", "builtin/gaussian"],
    ["sd", "sd15-lcm/gaussian"],
    ["sd-lcm", "sd15-lcm/gaussian"],
    ["sdxl", "sdxl-dmd2/gaussian"],
    ["sdxl-lcm", "sdxl-dmd2/gaussian"],
    ["sdxl-dmd2", "sdxl-dmd2/gaussian"],
  ];
  for (const [id, preset] of cases) {
    assert.equal(autoPreset({ id, evidence: "" }, blur), preset, id);
  }
  assert.equal(autoPreset(undefined, { name: "sr", options: { factor: 16 } }), "sd15-lcm/sr16");
});
