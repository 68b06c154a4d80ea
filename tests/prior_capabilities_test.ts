/**
 * Granular prior capabilities: a folder without `vae_encoder/` loads without `encode`; an encoder
 * that returns `latent_sample` offers no encoder gradients; a solver that needs a missing capability
 * is refused up front by `solve` with one line naming it, exit 2, nothing written.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { memoryFiles } from "../core/pipeline/files.ts";
import { DiffusersPrior } from "../core/pipeline/prior.ts";
import { unmetRequirements } from "../core/contracts.ts";
import { LCM_SCHEDULER, pipelineFiles, writeFolder } from "./diffusers_fixtures.ts";
import { task } from "./subprocess.ts";

const IMAGE = [1, 3, 16, 16];

Deno.test("capabilities: no vae_encoder/ → no encode; latent_sample → no encoder gradients", async () => {
  const noEnc = await DiffusersPrior.load(
    memoryFiles("no-encoder", pipelineFiles({ vaeEncoder: null })),
    { device: "cpu", imageShape: IMAGE },
  );
  assert.equal(noEnc.capabilities.encode, false);
  assert.equal(noEnc.capabilities.encoderGradients, false);
  assert.equal(noEnc.capabilities.decoderGradients, true);
  assert.equal(noEnc.capabilities.latentGradients, true);
  assert.equal(noEnc.encode, undefined);
  assert.equal(noEnc.encodeVjp, undefined);
  assert.equal(noEnc.networks().encoder, undefined);
  // decoding and denoising still work
  const z = { data: new Float32Array(16).fill(0.1), shape: [1, 4, 2, 2] };
  assert.deepEqual((await noEnc.decode(z)).shape, IMAGE);
  const why = unmetRequirements({ prior: { consistency: false, encode: true } }, undefined, noEnc);
  assert.equal(
    why,
    'prior "no-encoder" lacks an encoder (encode): model folder "no-encoder" has no vae_encoder/model.onnx',
  );
  const sampling = await DiffusersPrior.load(
    memoryFiles("sampling-encoder", pipelineFiles({ vaeEncoder: "sample" })),
    { device: "cpu", imageShape: IMAGE },
  );
  assert.equal(sampling.capabilities.encode, true);
  assert.equal(sampling.capabilities.encoderGradients, false);
  assert.match(
    unmetRequirements({ prior: { encoderGradients: true } }, undefined, sampling) ?? "",
    /lacks gradients through the encoder \(encoderGradients\): .*latent_sample/,
  );
  assert.equal(unmetRequirements({ prior: { decoderGradients: true } }, undefined, sampling), null);
});

Deno.test("solve refuses a prior without a needed capability up front: one line, exit 2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // an LCM folder (so LATINO has its consistency map) without vae_encoder/
    const noEnc = join(dir, "no-encoder");
    await writeFolder(
      noEnc,
      pipelineFiles({
        vaeEncoder: null,
        scheduler: LCM_SCHEDULER,
        unet: { timestep: "f32-scalar", ehsDim: 8, timeCondDim: 16 },
        unetConfig: { time_cond_proj_dim: 16 },
      }),
    );
    const sampling = join(dir, "sampling-encoder");
    await writeFolder(sampling, pipelineFiles({ vaeEncoder: "sample" }));
    // a third-party solver that needs gradients through the encoder (PSLD's gluing term does)
    const plugin = join(dir, "needs_encoder_gradients.ts");
    await Deno.writeTextFile(
      plugin,
      `export default {
  kind: "solver",
  name: "needs-encoder-gradients",
  description: "test solver that differentiates through the encoder",
  options: { safeParse: (v: unknown) => ({ success: true, data: v }) },
  create: () => ({
    name: "needs-encoder-gradients",
    requires: { prior: { decoderGradients: true, encoderGradients: true } },
    run: () => { throw new Error("must not run"); },
  }),
};
`,
    );
    const cases: [string[], RegExp][] = [
      [
        ["--solver", "latino", "--model", noEnc],
        /^error: solver "latino" cannot run here: prior "no-encoder" lacks an encoder \(encode\): .*no vae_encoder\/model\.onnx$/,
      ],
      [
        ["--solver", "needs-encoder-gradients", "--plugin", plugin, "--model", sampling],
        /^error: solver "needs-encoder-gradients" cannot run here: prior "sampling-encoder" lacks gradients through the encoder \(encoderGradients\): .*latent_sample/,
      ],
    ];
    for (const [args, pattern] of cases) {
      const out = join(dir, "out");
      const r = await task(
        "solve",
        ...args,
        "--operator",
        "blur:sigma=1",
        "--size",
        "16x16",
        "--out",
        out,
        "--quiet",
      );
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
      const lines = r.stderr.trimEnd().split("\n");
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0], pattern);
      assert.throws(() => Deno.statSync(out), Deno.errors.NotFound);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
