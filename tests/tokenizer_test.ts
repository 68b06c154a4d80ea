import assert from "node:assert/strict";
import { ClipTokenizer, clipTokenizerJson, parseMerges } from "../core/pipeline/tokenizer.ts";
import { memoryFiles } from "../core/pipeline/files.ts";
import { InputError } from "../core/errors.ts";

const DIR = new URL("../../shared/data/clip-tokenizer/", import.meta.url);
const vocab = JSON.parse(Deno.readTextFileSync(new URL("vocab.json", DIR))) as Record<
  string,
  number
>;
const mergesText = Deno.readTextFileSync(new URL("merges.txt", DIR));
const expected = JSON.parse(Deno.readTextFileSync(new URL("expected_ids.json", DIR))) as Record<
  string,
  number[]
>;
const tok = ClipTokenizer.fromVocabMerges(vocab, mergesText, { pad_token: "<|endoftext|>" });

Deno.test("tokenizer: real CLIP vocabulary matches the expected ids", () => {
  assert.equal(tok.bosId, 49406);
  assert.equal(tok.eosId, 49407);
  assert.equal(tok.maxLength, 77);
  assert.ok(Object.keys(expected).length >= 5);
  for (const [text, ids] of Object.entries(expected)) {
    assert.deepEqual(tok.ids(text), ids, JSON.stringify(text));
    const padded = tok.encode(text);
    assert.equal(padded.length, 77);
    assert.deepEqual(Array.from(padded.subarray(0, ids.length)), ids);
    assert.ok(padded.subarray(ids.length).every((v) => v === 49407), "padded with EOS");
  }
  assert.deepEqual(
    Array.from(tok.encode("a photo of a cat").subarray(0, 9)),
    [49406, 320, 1125, 539, 320, 2368, 49407, 49407, 49407],
  );
});

Deno.test("tokenizer: whitespace/case normalisation and the CLIP split pattern", () => {
  assert.deepEqual(tok.ids("  A   PHOTO\tof\na  cat "), tok.ids("a photo of a cat"));
  assert.deepEqual(tok.tokens("don't stop"), ["don</w>", "'t</w>", "stop</w>"]);
  // Digits are single tokens; punctuation runs stay together.
  assert.deepEqual(tok.tokens("x 123 ?!"), ["x</w>", "1</w>", "2</w>", "3</w>", "?!</w>"]);
});

Deno.test("tokenizer: unicode prompts match an independent Python BPE", async () => {
  const prompts = ["naïve café", "日本語 emoji 😀", "Ünïcödé  x²", "straße—dash…"];
  // A self-contained reference: NFC, collapse whitespace, lower-case, CLIP regex split, byte-to-unicode,
  // BPE with merge ranks, "</w>" on the last symbol, BOS/EOS (cf. the shared README).
  const py = `
import json, sys, unicodedata, regex
d = sys.argv[1]
vocab = json.load(open(d + "vocab.json", encoding="utf-8"))
merges = [tuple(l.split()) for l in open(d + "merges.txt", encoding="utf-8").read().split("\\n")[1:] if l.strip()]
ranks = {m: i for i, m in enumerate(merges)}
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs = bs[:]
n = 0
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + n); n += 1
b2u = dict(zip(bs, map(chr, cs)))
pat = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+")
def bpe(word):
    w = list(word[:-1]) + [word[-1] + "</w>"]
    while len(w) > 1:
        pairs = [(ranks.get((w[i], w[i + 1]), 1e18), i) for i in range(len(w) - 1)]
        r, i = min(pairs)
        if r == 1e18: break
        a, b = w[i], w[i + 1]
        out = []; j = 0
        while j < len(w):
            if j < len(w) - 1 and w[j] == a and w[j + 1] == b:
                out.append(a + b); j += 2
            else:
                out.append(w[j]); j += 1
        w = out
    return w
res = {}
for p in json.loads(sys.argv[2]):
    t = regex.sub(r"\\s+", " ", unicodedata.normalize("NFC", p)).lower()
    ids = [49406]
    for piece in pat.findall(t):
        ids += [vocab[x] for x in bpe("".join(b2u[b] for b in piece.encode("utf-8")))]
    res[p] = ids + [49407]
print(json.dumps(res))
`;
  const out = await new Deno.Command("python3", {
    args: ["-c", py, DIR.pathname, JSON.stringify(prompts)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const ref = JSON.parse(new TextDecoder().decode(out.stdout)) as Record<string, number[]>;
  for (const p of prompts) assert.deepEqual(tok.ids(p), ref[p], p);
});

Deno.test("tokenizer: truncation keeps BOS + 75 tokens + EOS", () => {
  const long = Array.from({ length: 100 }, (_, i) => (i % 2 ? "cat" : "dog")).join(" ");
  const ids = tok.encode(long);
  assert.equal(ids.length, 77);
  assert.equal(ids[0], 49406);
  assert.equal(ids[76], 49407);
  assert.deepEqual(Array.from(ids.subarray(1, 5)), [1929, 2368, 1929, 2368]);
  // 75 content tokens: exactly fits without truncation.
  const fits = tok.encode(Array(75).fill("cat").join(" "));
  assert.equal(fits[75], 2368);
  assert.equal(fits[76], 49407);
});

Deno.test("tokenizer: folder loading reads the pad token (SD2/SDXL tokenizer_2 pads with '!')", async () => {
  const files = memoryFiles(
    "m",
    new Map<string, string>([
      ["tokenizer_2/vocab.json", JSON.stringify(vocab)],
      ["tokenizer_2/merges.txt", mergesText],
      [
        "tokenizer_2/tokenizer_config.json",
        JSON.stringify({ model_max_length: 77, pad_token: "!" }),
      ],
      ["tokenizer_2/special_tokens_map.json", JSON.stringify({ pad_token: { content: "!" } })],
    ]),
  );
  const t2 = await ClipTokenizer.load(files, "tokenizer_2");
  assert.equal(t2.padId, 0);
  const ids = t2.encode("a cat");
  assert.deepEqual(Array.from(ids.subarray(0, 5)), [49406, 320, 2368, 49407, 0]);
  assert.ok(ids.subarray(4).every((v) => v === 0));
});

Deno.test("tokenizer: a tokenizer.json (fast file) is used as is", async () => {
  const json = clipTokenizerJson(vocab, parseMerges(mergesText));
  const files = memoryFiles(
    "fast",
    new Map([["tokenizer/tokenizer.json", JSON.stringify(json)]]),
  );
  const t = await ClipTokenizer.load(files);
  for (const [text, ids] of Object.entries(expected)) assert.deepEqual(t.ids(text), ids);
  assert.equal(t.padId, 49407);
});

Deno.test("tokenizer: a tiny vocabulary works (the built-in model ships its own)", () => {
  // Byte alphabet + "</w>" variants of a few letters + merges building "cat</w>".
  const v: Record<string, number> = {};
  for (const ch of "acdgot") {
    v[ch] = Object.keys(v).length;
    v[ch + "</w>"] = Object.keys(v).length;
  }
  for (const m of ["ca", "cat</w>", "do", "dog</w>"]) v[m] = Object.keys(v).length;
  v["<|startoftext|>"] = Object.keys(v).length;
  v["<|endoftext|>"] = Object.keys(v).length;
  const merges = "#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n";
  const t = ClipTokenizer.fromVocabMerges(v, merges, { model_max_length: 8 });
  assert.equal(t.maxLength, 8);
  assert.deepEqual(t.tokens("Cat dog ad"), ["cat</w>", "dog</w>", "a", "d</w>"]);
  const ids = t.encode("cat dog");
  assert.deepEqual(Array.from(ids), [
    v["<|startoftext|>"],
    v["cat</w>"],
    v["dog</w>"],
    ...Array(5).fill(v["<|endoftext|>"]),
  ]);
});

Deno.test("tokenizer: missing files give one InputError naming folder and file", async () => {
  const files = memoryFiles("broken", new Map([["tokenizer/vocab.json", "{}"]]));
  await assert.rejects(
    () => ClipTokenizer.load(files),
    (e: unknown) =>
      e instanceof InputError && e.message.includes('model folder "broken"') &&
      e.message.includes("tokenizer/ lacks merges.txt"),
  );
  const bad = memoryFiles("bad", new Map([["tokenizer/tokenizer_config.json", "{not json"]]));
  await assert.rejects(
    () => ClipTokenizer.load(bad),
    /tokenizer\/tokenizer_config.json is not a valid JSON/,
  );
  const nospecial = memoryFiles(
    "nospecial",
    new Map([["tokenizer/vocab.json", '{"a</w>": 0}'], [
      "tokenizer/merges.txt",
      "#version: 0.2\n",
    ]]),
  );
  await assert.rejects(() => ClipTokenizer.load(nospecial), /not a usable CLIP tokenizer/);
});
