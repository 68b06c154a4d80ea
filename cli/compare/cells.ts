/**
 * The cells of a comparison — (method, operator, σ_y, image, seed) — in their canonical order, their
 * keys, and the deterministic split into shards.
 *
 * A cell's key is a hash of its five coordinates only, so it names the same cell in every process,
 * shard and re-run; the measurement key is a hash of (operator, σ_y, image, seed), the problem that
 * every method of that group solves.
 *
 * @module
 */
import { canonicalJson, type CompareConfig, type MethodEntry, sha256 } from "./config.ts";

/** One cell. */
export interface Cell {
  /** Hash of the five coordinates (16 hex digits). */
  key: string;
  /** Hash of (operator, σ_y, image, seed) (16 hex digits). */
  measurementKey: string;
  /** Position in the canonical order. */
  index: number;
  /** The method. */
  method: MethodEntry;
  /** Index into config.operators. */
  operator: number;
  /** σ_y. */
  noise: number;
  /** Index into config.images. */
  image: number;
  /** Seed. */
  seed: number;
}

/**
 * The key of a cell from its coordinates (labels, σ_y, image name and content hash, seed).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { cellKey } from "./cells.ts";
 * const k = cellKey("latino", "blur:sigma=3", 0.01, { name: "a", sha256: "00" }, 0);
 * assert.match(k, /^[0-9a-f]{16}$/);
 * assert.notEqual(k, cellKey("latino", "blur:sigma=3", 0.01, { name: "a", sha256: "00" }, 1));
 * ```
 */
export function cellKey(
  method: string,
  operator: string,
  noise: number,
  image: { name: string; sha256: string },
  seed: number,
): string {
  return sha256(canonicalJson({ method, operator, noise, image: [image.name, image.sha256], seed }))
    .slice(0, 16);
}

/** The key of a measurement (operator, σ_y, image, seed). */
export function measurementKey(
  operator: string,
  noise: number,
  image: { name: string; sha256: string },
  seed: number,
): string {
  return sha256(canonicalJson({ operator, noise, image: [image.name, image.sha256], seed }))
    .slice(0, 16);
}

/**
 * Every cell of a configuration in canonical order: image, operator, σ_y, seed, then the methods
 * (solvers, then baselines), leaving out the excluded (method, operator) pairs. Methods of one
 * measurement are adjacent, so a process computes each measurement once.
 */
export function planCells(config: CompareConfig): Cell[] {
  const excluded = new Set(config.excluded.map((e) => `${e.method}\u0000${e.operator}`));
  const cells: Cell[] = [];
  config.images.forEach((img, ii) => {
    config.operators.forEach((op, oi) => {
      for (const noise of config.noise) {
        for (const seed of config.seeds) {
          const mk = measurementKey(op.label, noise, img, seed);
          for (const method of config.methods) {
            if (excluded.has(`${method.label}\u0000${op.label}`)) continue;
            cells.push({
              key: cellKey(method.label, op.label, noise, img, seed),
              measurementKey: mk,
              index: cells.length,
              method,
              operator: oi,
              noise,
              image: ii,
              seed,
            });
          }
        }
      }
    });
  });
  return cells;
}

/**
 * The cells of shard i of n: the measurement groups (all methods of one problem) dealt round-robin
 * in canonical order, so a shard computes each of its measurements once and the split depends
 * only on the configuration.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { shardCells } from "./cells.ts";
 * const cells = ["a", "a", "b", "b", "c", "c"].map((m, index) => ({ measurementKey: m, index }));
 * assert.deepEqual(shardCells(cells, { index: 0, count: 2 }).map((c) => c.index), [0, 1, 4, 5]);
 * assert.deepEqual(shardCells(cells, { index: 1, count: 2 }).map((c) => c.index), [2, 3]);
 * ```
 */
export function shardCells<C extends { measurementKey: string }>(
  cells: readonly C[],
  shard: { index: number; count: number } | null,
): C[] {
  if (!shard || shard.count === 1) return [...cells];
  const group = new Map<string, number>();
  return cells.filter((c) => {
    let g = group.get(c.measurementKey);
    if (g === undefined) group.set(c.measurementKey, g = group.size);
    return g % shard.count === shard.index;
  });
}
