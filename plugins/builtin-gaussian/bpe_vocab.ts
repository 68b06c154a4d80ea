/**
 * A tiny CLIP-format BPE vocabulary for the exact model's text encoder: the 256 byte symbols, the
 * same with `</w>`, one merged token per known word (built by chains of merges), then
 * `<|startoftext|>` and `<|endoftext|>` — the layout of CLIP's `vocab.json` + `merges.txt`, so any
 * CLIP tokenizer loader reads it.
 *
 * The BPE step is written here (not taken from `@huggingface/tokenizers`) because the vocabulary
 * is *constructed* by simulating BPE on each word and adding merges until the word is one token;
 * the same routine gives a reference tokenizer that tests cross-check against the library.
 *
 * @module
 */

/** Begin-of-text token. */
export const BOS_TOKEN = "<|startoftext|>";
/** End-of-text token (also the padding token, as in SD 1.x). */
export const EOS_TOKEN = "<|endoftext|>";
/** Suffix of a word-final symbol. */
export const END_OF_WORD = "</w>";

/**
 * GPT-2/CLIP `bytes_to_unicode`: byte b ↦ a printable character. Returns [order, map] where
 * `order` lists the bytes in vocabulary order (printable ranges first) and `map[b]` is the
 * character of byte b.
 */
export function bytesToUnicode(): { order: number[]; map: string[] } {
  const bs: number[] = [];
  const range = (a: number, b: number) => {
    for (let i = a; i <= b; i++) bs.push(i);
  };
  range(0x21, 0x7e);
  range(0xa1, 0xac);
  range(0xae, 0xff);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const map = new Array<string>(256);
  bs.forEach((b, i) => (map[b] = String.fromCodePoint(cs[i])));
  return { order: bs, map };
}

/** Merge ranks keyed by "left right". */
export type MergeRanks = Map<string, number>;

/** Rank table of a merge list. */
export function mergeRanks(merges: readonly (readonly [string, string])[]): MergeRanks {
  const r: MergeRanks = new Map();
  merges.forEach(([a, b], i) => {
    const k = `${a} ${b}`;
    if (!r.has(k)) r.set(k, i);
  });
  return r;
}

/**
 * BPE of one pre-token given as byte-level symbols (the last one already carries `</w>`): merge
 * the lowest-ranked adjacent pair (all its occurrences, left to right) until none is ranked.
 */
export function bpeSymbols(symbols: readonly string[], ranks: MergeRanks): string[] {
  let word = [...symbols];
  while (word.length > 1) {
    let best = -1, bestRank = Infinity;
    for (let i = 0; i + 1 < word.length; i++) {
      const r = ranks.get(`${word[i]} ${word[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) break;
    const [a, b] = [word[best], word[best + 1]];
    const next: string[] = [];
    for (let i = 0; i < word.length;) {
      if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
        next.push(a + b);
        i += 2;
      } else next.push(word[i++]);
    }
    word = next;
  }
  return word;
}

/** Byte-level symbols of a word (UTF-8 bytes through bytes_to_unicode), `</w>` on the last. */
export function wordSymbols(word: string): string[] {
  const { map } = bytesToUnicode();
  const syms = [...new TextEncoder().encode(word)].map((b) => map[b]);
  if (syms.length) syms[syms.length - 1] += END_OF_WORD;
  return syms;
}

/** A CLIP-format vocabulary. */
export interface BpeVocabulary {
  /** Tokens in id order. */
  vocab: string[];
  /** Merges in rank order. */
  merges: [string, string][];
  /** Id of `<|startoftext|>`. */
  bosId: number;
  /** Id of `<|endoftext|>`. */
  eosId: number;
}

/**
 * Build the vocabulary so that every listed (lower-case) word is exactly one token `word</w>`.
 * For each word in turn, BPE with the merges so far leaves tokens t_1…t_k; appending the chain
 * (t_1,t_2), (t_1t_2,t_3), … and repeating until BPE gives one token. Appended merges rank after
 * all earlier ones, so they never change how an earlier word is tokenised: at every step of its
 * BPE an earlier (lower-ranked) merge applies until it is a single token.
 */
export function buildBpeVocabulary(words: readonly string[]): BpeVocabulary {
  const { order, map } = bytesToUnicode();
  const vocab: string[] = order.map((b) => map[b]);
  for (const b of order) vocab.push(map[b] + END_OF_WORD);
  const known = new Set(vocab);
  const merges: [string, string][] = [];
  let ranks = mergeRanks(merges);
  for (const w of words) {
    if (w !== w.toLowerCase() || !/^\p{L}+$/u.test(w)) {
      throw new RangeError(`vocabulary word "${w}": expected lower-case letters only`);
    }
    // A chain can fire at several places when the word repeats a pair ("vivid": v·i twice), so
    // repeat until the word is one token; every round shortens it.
    for (
      let toks = bpeSymbols(wordSymbols(w), ranks);
      toks.length > 1;
      toks = bpeSymbols(wordSymbols(w), ranks)
    ) {
      let acc = toks[0];
      for (let i = 1; i < toks.length; i++) {
        merges.push([acc, toks[i]]);
        acc += toks[i];
        if (!known.has(acc)) {
          known.add(acc);
          vocab.push(acc);
        }
      }
      ranks = mergeRanks(merges);
    }
  }
  vocab.push(BOS_TOKEN, EOS_TOKEN);
  return { vocab, merges, bosId: vocab.length - 2, eosId: vocab.length - 1 };
}

/** `vocab.json` text (token → id). */
export function vocabJson(v: BpeVocabulary): string {
  const o: Record<string, number> = {};
  v.vocab.forEach((t, i) => (o[t] = i));
  return JSON.stringify(o);
}

/** `merges.txt` text: `#version: 0.2` header, one "left right" merge per line. */
export function mergesTxt(v: BpeVocabulary): string {
  return ["#version: 0.2", ...v.merges.map(([a, b]) => `${a} ${b}`)].join("\n") + "\n";
}

const CLIP_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;

/**
 * Reference CLIP tokenisation (no ftfy/html clean-up): collapse whitespace, lower-case, split with
 * CLIP's pattern, byte-level BPE, wrap in BOS … EOS, truncate to `maxLength` and pad with EOS.
 */
export function referenceTokenize(prompt: string, v: BpeVocabulary, maxLength = 77): number[] {
  const ids = new Map(v.vocab.map((t, i) => [t, i] as const));
  const ranks = mergeRanks(v.merges);
  const text = prompt.normalize("NFC").replace(/\s+/g, " ").trim().toLowerCase();
  const out: number[] = [v.bosId];
  for (const m of text.matchAll(CLIP_PATTERN)) {
    for (const tok of bpeSymbols(wordSymbols(m[0]), ranks)) {
      const id = ids.get(tok);
      if (id === undefined) throw new Error(`token "${tok}" missing from the vocabulary`);
      out.push(id);
    }
  }
  const body = out.slice(0, maxLength - 1);
  body.push(v.eosId);
  while (body.length < maxLength) body.push(v.eosId);
  return body;
}
