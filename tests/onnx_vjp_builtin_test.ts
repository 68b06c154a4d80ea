/**
 * The VJP transform on the built-in exact model's real ONNX graphs (plugins/builtin-gaussian):
 * ε-UNet and consistency UNet (w.r.t. the latent and the conditioning embedding), VAE decoder and
 * encoder, and the text encoder cut at its embedding lookup — gradients vs finite differences.
 */
import { createExactModel, promptIds } from "../plugins/builtin-gaussian/model.ts";
import { buildExactModelFiles } from "../plugins/builtin-gaussian/emit.ts";
import { cutAtEmbedding } from "../core/onnx/graph_tools.ts";
import { decodeModel, encodeModel } from "../core/onnx/proto.ts";
import { checkBuilt, toFloat64 } from "./onnx_vjp_harness.ts";

const model = createExactModel({ imageShape: [1, 3, 8, 8] });
const files = buildExactModelFiles(model);
const bytes = (name: string) => files.get(name) as Uint8Array;
const { keepH: kh, keepW: kw } = model.layout;
const T = model.text.maxLength;
const D = model.text.readout.hiddenSize;
/**
 * The graphs are float32; all their ops have double kernels, so they are checked converted to
 * float64 (relative error < 1e-4 against finite differences in float64).
 */
const F64 = { directions: 4 };

for (const unet of ["unet", "consistency_unet"]) {
  Deno.test(`built-in exact model ${unet}: ∂out_sample/∂sample and ∂/∂encoder_hidden_states vs FD`, async () => {
    await checkBuilt(`exact-${unet}`, "float64", {
      bytes: toFloat64(bytes(`${unet}/model.onnx`)),
      inputs: [
        { name: "sample", dims: [1, 3, kh, kw] },
        { name: "timestep", dims: [], values: () => [437], wrt: false },
        {
          name: "encoder_hidden_states",
          dims: [1, T, D],
          values: (r, n) => Array.from({ length: n }, () => 0.3 * r.normal()),
        },
      ],
      outputs: ["out_sample"],
    }, F64);
  });
}

Deno.test("built-in exact model VAE decoder and encoder: ∂/∂latent, ∂/∂image vs FD", async () => {
  await checkBuilt("exact-vae-decoder", "float64", {
    bytes: toFloat64(bytes("vae_decoder/model.onnx")),
    inputs: [{ name: "latent_sample", dims: [1, 3, kh, kw] }],
    outputs: ["sample"],
  }, F64);
  await checkBuilt("exact-vae-encoder", "float64", {
    bytes: toFloat64(bytes("vae_encoder/model.onnx")),
    inputs: [{ name: "sample", dims: [1, 3, 8, 8] }],
    outputs: ["latent_parameters"],
  }, F64);
});

Deno.test("built-in exact model text encoder cut at the embedding lookup: ∂/∂inputs_embeds vs FD", async () => {
  const cut = cutAtEmbedding(decodeModel(toFloat64(bytes("text_encoder/model.onnx"))));
  const ids = promptIds(model, "a sharp photo");
  const inputs = [{
    name: cut.inputName,
    dims: [1, T, D],
    values: (r: { normal(): number }, n: number) => Array.from({ length: n }, () => r.normal()),
  }];
  if (cut.idsStillUsed) {
    inputs.push({ name: cut.idsInput, dims: [1, T], type: "int64", values: () => ids } as never);
  }
  await checkBuilt("exact-text-cut", "float64", {
    bytes: encodeModel(cut.model),
    inputs,
    outputs: ["last_hidden_state", "pooler_output"],
  }, F64);
});
