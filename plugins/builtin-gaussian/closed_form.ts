/**
 * Closed forms of the built-in exact model, all in float64 (see `exact-model.md`).
 *
 * Latent basis. A model-scale image x′ ∈ [−1,1]^{3×H×W} is encoded as
 *   z = E(x′) = s · P · DCT2(C x′),
 * C the orthonormal colour matrix (rows (1,1,1)/√3, (1,−1,0)/√2, (1,1,−2)/√6), DCT2 the orthonormal
 * 2-D DCT-II of each channel over the whole image (Φ_H X Φ_Wᵀ), P the identity (lossless) or the
 * restriction to the low-frequency K_h×K_w block (lossy; D∘E is then an orthogonal projection).
 * D(z) = Cᵀ IDCT2(Pᵀ z / s).
 *
 * Prior (diagonal in that basis). For channel k and frequency (u,v):
 *   λ_{k,u,v} = s² κ² e^{a_k} (ρ0² + κ² ρ²)^{−β_k/2},   ρ² = u²/H² + v²/W²,   κ = √(HW)/N_ref,
 *   μ_{k,0,0} = m_k √(HW) s, μ = 0 elsewhere.
 * DEVIATION (documented extension of exact-model.md §2): the κ factors make the default prior
 * sensible at every image size. They treat an H×W image as the same scene seen at a different
 * pixel count: frequencies are measured in cycles per reference image of N_ref = 64 pixels
 * (κρ = "scene frequency"), and coefficient variances grow with the pixel count (κ²), which is
 * exactly how the orthonormal DCT of a box-downsampled image scales (a 2× box downsampling keeps
 * the low-frequency coefficients up to a factor 2 = κ ratio). At √(HW) = N_ref (e.g. 64×64),
 * κ = 1 and the formula is the one of exact-model.md. `refSize = 0` switches the scaling off
 * (κ = 1 at every size).
 *
 * θ = (a_1,a_2,a_3, β_1,β_2,β_3, m_1,m_2,m_3) = W · mean_tokens(c) + b.
 *
 * Diffusion (scaled_linear, 1000 steps): z_t = √ᾱ z_0 + √(1−ᾱ) ε, so z_t ~ N(√ᾱ μ, ᾱλ + 1 − ᾱ).
 *
 * The closed forms live one concern per module; this module gathers them:
 * - `exact_schedule.ts`: the ᾱ_t schedule and LATINO's timesteps;
 * - `basis.ts`: the latent basis (colour + DCT encoder/decoder, Gram diagonals of masks);
 * - `spectra.ts`: the prior's spectrum (moments from θ) and the text read-out θ(c);
 * - `denoisers.ts`: Tweedie, the consistency map and their VJPs;
 * - `posterior.ts`: exact posteriors for latent-diagonal operators;
 * - `evidence.ts`: the evidence in θ, its maximiser, the θ-fit and prior scores;
 * - `latino_moments.ts`: LATINO's exact output law;
 * - `posterior_cg.ts`: exact posteriors for general linear operators (preconditioned CG);
 * - `dense.ts`: small dense solves.
 *
 * @module
 */
export * from "./exact_schedule.ts";
export * from "./basis.ts";
export * from "./spectra.ts";
export * from "./dense.ts";
export * from "./denoisers.ts";
export * from "./posterior.ts";
export * from "./evidence.ts";
export * from "./latino_moments.ts";
export * from "./posterior_cg.ts";
export * from "./sample_error.ts";
