/**
 * The "builtin" prior plugin end to end: the emitted folder loaded by the diffusers Prior from
 * memory, against the float64 closed forms.
 */
import assert from "node:assert/strict";
import { PluginRegistry, validateOptions } from "../core/registry.ts";
import { parseSpec } from "../core/spec.ts";
import type { Prior } from "../core/contracts.ts";
import { builtinPlugin } from "../plugins/builtin-gaussian/plugin.ts";
import {
  consistencyMap,
  decode64,
  encode64,
  exactSchedule,
  tweedie,
} from "../plugins/builtin-gaussian/closed_form.ts";
import {
  createExactModel,
  embedIds,
  modelMoments,
  promptIds,
  promptTheta,
} from "../plugins/builtin-gaussian/model.ts";
import { relErr } from "./exact_model_helpers.ts";

const H = 16, W = 24;

async function makePrior(spec: string): Promise<Prior> {
  const reg = new PluginRegistry().register(builtinPlugin);
  const s = parseSpec(spec, "prior");
  const plugin = reg.get("prior", s.name);
  return await plugin.create(validateOptions(plugin, s.options), {
    device: "cpu",
    imageShape: [1, 3, H, W],
  });
}

Deno.test("builtin prior: encode/decode/condition/denoise/consistency equal the closed forms", async () => {
  for (
    const [spec, opts] of [["builtin", {}], ["builtin:lossy=8x12,scale=0.5", {
      lossy: [8, 12] as [number, number],
      scale: 0.5,
    }]] as const
  ) {
    const prior = await makePrior(spec);
    const m = createExactModel({ imageShape: [1, 3, H, W], ...opts });
    const l = m.layout;
    assert.deepEqual(prior.latentShape([1, 3, H, W]), [1, 3, l.keepH, l.keepW]);
    assert.ok(prior.capabilities.consistency && prior.capabilities.denoise);
    const x = Float32Array.from({ length: 3 * H * W }, (_, i) => Math.sin(0.31 * i) * 0.8);
    const z = await prior.encode!({ data: x, shape: [1, 3, H, W] });
    assert.ok(relErr(z.data, encode64(x, l)) < 1e-6, `${spec}: encode`);
    const xr = await prior.decode(z);
    assert.ok(relErr(xr.data, decode64(encode64(x, l), l)) < 1e-6, `${spec}: decode`);
    const prompt = "a sharp red photo";
    const c = await prior.condition(prompt);
    const ehs = c.tensors.encoder_hidden_states;
    assert.deepEqual(ehs.shape, [1, 77, 16]);
    assert.deepEqual(Array.from(ehs.data), Array.from(embedIds(m, promptIds(m, prompt))));
    const mom = modelMoments(m, promptTheta(m, prompt));
    const { alphasCumprod } = exactSchedule();
    for (let t = 0; t < 1000; t++) {
      assert.ok(
        Math.abs(prior.schedule.alphasCumprod[t] - alphasCumprod[t]) < 1e-12 * alphasCumprod[t],
      );
    }
    let worstD = 0, worstG = 0;
    for (const t of [999, 624, 124, 10]) {
      const ab = alphasCumprod[t];
      const zt = Float32Array.from(
        mom.mu,
        (mu, i) => Math.sqrt(ab) * mu + Math.sqrt(ab * mom.lambda[i] + 1 - ab) * Math.cos(0.77 * i),
      );
      const zt4 = { data: zt, shape: [1, 3, l.keepH, l.keepW] };
      const den = await prior.denoise!(zt4, t, c);
      const g = await prior.consistency!(zt4, t, c);
      worstD = Math.max(worstD, relErr(den.data, tweedie(zt, t, mom).z0));
      worstG = Math.max(worstG, relErr(g.data, consistencyMap(zt, t, mom)));
    }
    console.log(
      `${spec}: denoise (ẑ0 from ε) rel ${worstD.toExponential(1)}, consistency rel ${
        worstG.toExponential(1)
      }`,
    );
    assert.ok(worstG < 1e-5, "consistency = G (prediction_type sample: no conversion)");
    assert.ok(worstD < 1e-5, "denoise = Tweedie ẑ0 (ε → ẑ0 divides by √ᾱ ≥ 0.068)");
  }
});

Deno.test("builtin prior: option errors and write_model", async () => {
  await assert.rejects(() => makePrior("builtin:lossy=1.5"), /lossy/);
  await assert.rejects(() => makePrior("builtin:lossy=40x2"), /must fit/);
  await assert.rejects(() => makePrior("builtin:colour=1"), /colour/);
  const dir = await Deno.makeTempDir();
  try {
    await makePrior(`builtin:write_model=${dir}/model`);
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/model/vae_decoder/config.json`));
    assert.deepEqual(cfg.latent_shape, [3, H, W]);
    await assert.rejects(() => makePrior(`builtin:write_model=${dir}/model`), /exists/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
