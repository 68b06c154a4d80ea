/**
 * The CLIP BPE tokenizer of Stable Diffusion, on `@huggingface/tokenizers`.
 *
 * SD's `tokenizer/` folder holds only the "slow" files (`vocab.json` + `merges.txt`); they are
 * converted in-process to the layout transformers' `CLIPConverter` writes to `tokenizer.json`
 * (onnx.md §4), and a `tokenizer.json` is used as is when present:
 * - normalizer: NFC → replace `\s+` by " " → lower-case;
 * - pre-tokenizer: keep the matches of
 *   `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`, then byte-level (no prefix space);
 * - model: BPE with end-of-word suffix "</w>", unknown token "<|endoftext|>";
 * - post-processor: `<|startoftext|>` … `<|endoftext|>`.
 * Sequences are truncated to `model_max_length` (77: BOS + 75 tokens + EOS) and padded with the
 * pad token of `tokenizer_config.json` / `special_tokens_map.json` (SD 1.x: `<|endoftext|>`;
 * SD 2.x and SDXL's `tokenizer_2`: "!"), defaulting to the EOS token.
 *
 * @module
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { InputError } from "../errors.ts";
import type { ModelFiles } from "./files.ts";

/**
 * The pre-tokenizer pattern of CLIP (transformers `CLIPConverter`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CLIP_SPLIT_PATTERN } from "./tokenizer.ts";
 * const pieces = "don't stop 12?!".match(new RegExp(CLIP_SPLIT_PATTERN, "gu"));
 * assert.deepEqual(pieces, ["don", "'t", "stop", "1", "2", "?!"]);
 * ```
 */
export const CLIP_SPLIT_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

/**
 * CLIP's slow tokenizer reads at most this many merges (`merges[1 : 49152 − 256 − 2 + 1]`);
 * OpenAI's full BPE file has more lines than the vocabulary uses.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CLIP_MAX_MERGES } from "./tokenizer.ts";
 * assert.equal(CLIP_MAX_MERGES, 48894);
 * ```
 */
export const CLIP_MAX_MERGES = 49152 - 256 - 2;

/** Special-token settings (from tokenizer_config.json / special_tokens_map.json). */
export interface ClipTokenizerConfig {
  /** Sequence length (default 77). */
  model_max_length?: number;
  /** Begin-of-text token (default `<|startoftext|>`). */
  bos_token?: string | { content: string };
  /** End-of-text token (default `<|endoftext|>`). */
  eos_token?: string | { content: string };
  /** Unknown token (default `<|endoftext|>`). */
  unk_token?: string | { content: string };
  /** Padding token (default: the EOS token). */
  pad_token?: string | { content: string } | null;
  /** Anything else the file holds. */
  [key: string]: unknown;
}

function tokenText(v: unknown, dflt: string): string {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    return (v as { content: string }).content;
  }
  return dflt;
}

/**
 * Parse merges.txt: drop the `#version` header and empty lines, cap at CLIP's merge count.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseMerges } from "./tokenizer.ts";
 * assert.deepEqual(parseMerges("#version: 0.2\na t</w>\n\nc at</w>\n"), ["a t</w>", "c at</w>"]);
 * ```
 */
export function parseMerges(text: string): string[] {
  const lines = text.split(/\r?\n/);
  const out: string[] = [];
  for (const l of lines) {
    if (l.startsWith("#version") || l.trim() === "") continue;
    out.push(l);
    if (out.length === CLIP_MAX_MERGES) break;
  }
  return out;
}

/**
 * The `tokenizer.json` object that transformers' CLIPConverter would write for these slow files.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { clipTokenizerJson } from "./tokenizer.ts";
 * const vocab = { "<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2 };
 * const json = clipTokenizerJson(vocab, []);
 * assert.equal((json.model as { type: string }).type, "BPE");
 * assert.throws(() => clipTokenizerJson({ "a</w>": 0 }, []), RangeError);
 * ```
 */
export function clipTokenizerJson(
  vocab: Record<string, number>,
  merges: string[],
  config: ClipTokenizerConfig = {},
): Record<string, unknown> {
  const bos = tokenText(config.bos_token, "<|startoftext|>");
  const eos = tokenText(config.eos_token, "<|endoftext|>");
  const unk = tokenText(config.unk_token, "<|endoftext|>");
  const bosId = vocab[bos], eosId = vocab[eos];
  if (bosId === undefined || eosId === undefined) {
    throw new RangeError(`vocabulary lacks the special tokens ${bos} / ${eos}`);
  }
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: true,
    special: true,
  });
  return {
    version: "1.0",
    added_tokens: bosId === eosId
      ? [special(bosId, bos)]
      : [special(bosId, bos), special(eosId, eos)],
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "NFC" },
        { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
        { type: "Lowercase" },
      ],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: { Regex: CLIP_SPLIT_PATTERN },
          behavior: "Removed",
          invert: true,
        },
        // use_regex false: the CLIP split above already separates letters, digits and the rest,
        // so GPT-2's regex (the ByteLevel default) would not split any piece further.
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: [eos, eosId],
      cls: [bos, bosId],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
}

/**
 * CLIP tokenizer producing fixed-length id sequences for a text encoder.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ClipTokenizer } from "./tokenizer.ts";
 * // A tiny vocabulary: "cat" is built by two merges, "a" is a whole word.
 * const vocab = {
 *   "<|startoftext|>": 0,
 *   "<|endoftext|>": 1,
 *   "c": 2,
 *   "a": 3,
 *   "t</w>": 4,
 *   "at</w>": 5,
 *   "cat</w>": 6,
 *   "a</w>": 7,
 * };
 * const tok = ClipTokenizer.fromVocabMerges(vocab, "#version: 0.2\na t</w>\nc at</w>\n", {
 *   model_max_length: 6,
 * });
 * assert.deepEqual(tok.tokens("A  Cat"), ["a</w>", "cat</w>"]);
 * assert.deepEqual(tok.ids("a cat"), [0, 7, 6, 1]);
 * assert.deepEqual([...tok.encode("a cat")], [0, 7, 6, 1, 1, 1]); // padded with EOS
 * ```
 */
export class ClipTokenizer {
  /** Sequence length of every encoding. */
  readonly maxLength: number;
  /** Id of the begin-of-text token. */
  readonly bosId: number;
  /** Id of the end-of-text token. */
  readonly eosId: number;
  /** Id used for padding. */
  readonly padId: number;
  #tok: Tokenizer;

  /**
   * Build from a `tokenizer.json` object and the tokenizer config.
   *
   * @param tokenizerJson tokenizer.json contents (parsed)
   * @param config tokenizer_config.json merged with special_tokens_map.json
   */
  constructor(tokenizerJson: Record<string, unknown>, config: ClipTokenizerConfig = {}) {
    this.#tok = new Tokenizer(tokenizerJson, config);
    const id = (text: string, what: string) => {
      const v = this.#tok.token_to_id(text);
      if (v === undefined) {
        throw new RangeError(`${what} token ${JSON.stringify(text)} is not in the vocabulary`);
      }
      return v;
    };
    const bos = tokenText(config.bos_token, "<|startoftext|>");
    const eos = tokenText(config.eos_token, "<|endoftext|>");
    this.bosId = id(bos, "bos");
    this.eosId = id(eos, "eos");
    this.padId = config.pad_token ? id(tokenText(config.pad_token, eos), "pad") : this.eosId;
    const m = config.model_max_length;
    // Some configs carry a huge sentinel (1e30) for "no limit"; CLIP's position table has 77.
    this.maxLength = typeof m === "number" && Number.isInteger(m) && m >= 2 && m <= 4096 ? m : 77;
  }

  /** Build from the slow files (vocab.json object + merges.txt text). */
  static fromVocabMerges(
    vocab: Record<string, number>,
    mergesText: string,
    config: ClipTokenizerConfig = {},
  ): ClipTokenizer {
    return new ClipTokenizer(clipTokenizerJson(vocab, parseMerges(mergesText), config), config);
  }

  /**
   * Load a tokenizer folder (`tokenizer/` or `tokenizer_2/`) of a model folder: `tokenizer.json`
   * when present, else `vocab.json` + `merges.txt`; special tokens and length from
   * `tokenizer_config.json` and `special_tokens_map.json` (the latter wins, as in transformers).
   * Throws an {@link InputError} naming the folder and file when something is missing or invalid.
   */
  static async load(files: ModelFiles, dir = "tokenizer"): Promise<ClipTokenizer> {
    const where = (f: string) => `model folder "${files.name}": ${dir}/${f}`;
    const json = async (f: string): Promise<Record<string, unknown> | undefined> => {
      const text = await files.readText(`${dir}/${f}`);
      if (text === undefined) return undefined;
      try {
        const v = JSON.parse(text);
        if (typeof v !== "object" || v === null || Array.isArray(v)) {
          throw new Error("not an object");
        }
        return v;
      } catch (e) {
        throw new InputError(`${where(f)} is not a valid JSON object (${(e as Error).message})`);
      }
    };
    const config: ClipTokenizerConfig = {
      ...(await json("tokenizer_config.json")),
      ...(await json("special_tokens_map.json")),
    };
    try {
      const fast = await json("tokenizer.json");
      if (fast) return new ClipTokenizer(fast, config);
      const vocab = await json("vocab.json");
      const merges = await files.readText(`${dir}/merges.txt`);
      if (!vocab || merges === undefined) {
        const missing = [!vocab ? "vocab.json" : "", merges === undefined ? "merges.txt" : ""]
          .filter((s) => s).join(" and ");
        throw new InputError(
          `model folder "${files.name}": ${dir}/ lacks ${missing} (expected a CLIP BPE tokenizer: tokenizer.json, or vocab.json + merges.txt)`,
        );
      }
      return ClipTokenizer.fromVocabMerges(vocab as Record<string, number>, merges, config);
    } catch (e) {
      if (e instanceof InputError) throw e;
      throw new InputError(
        `model folder "${files.name}": ${dir}/ is not a usable CLIP tokenizer (${
          (e as Error).message
        })`,
      );
    }
  }

  /** Token ids with BOS/EOS, neither truncated nor padded. */
  ids(text: string): number[] {
    return this.#tok.encode(text).ids;
  }

  /** Token strings (no BOS/EOS), for inspection. */
  tokens(text: string): string[] {
    return this.#tok.tokenize(text);
  }

  /**
   * Exactly `maxLength` ids: BOS, the text's tokens (truncated), EOS, then padding.
   *
   * @example
   * ```ts ignore
   * tok.encode("a photo of a cat").slice(0, 8); // 49406 320 1125 539 320 2368 49407 49407
   * ```
   */
  encode(text: string): Int32Array {
    let ids = this.ids(text);
    if (ids[0] !== this.bosId) ids = [this.bosId, ...ids];
    if (ids[ids.length - 1] !== this.eosId) ids = [...ids, this.eosId];
    if (ids.length > this.maxLength) ids = [...ids.slice(0, this.maxLength - 1), this.eosId];
    const out = new Int32Array(this.maxLength).fill(this.padId);
    out.set(ids);
    return out;
  }
}
