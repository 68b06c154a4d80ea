/**
 * The built-in exact model: a latent-diffusion model whose every quantity is known in closed form
 * (orthonormal colour + DCT autoencoder, Gaussian prior diagonal in that basis, exact Tweedie
 * and consistency UNets), emitted as ONNX graphs, plus the float64 closed forms tests use.
 *
 * @module
 */
export * from "./closed_form.ts";
export * from "./params.ts";
export * from "./bpe_vocab.ts";
export * from "./model.ts";
export * from "./emit.ts";
export * from "./plugin.ts";
export * from "./sapg_exact.ts";
