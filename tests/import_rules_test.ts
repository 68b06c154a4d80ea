/**
 * The import rule, checked over every `.ts` file of the repository and every `@example` block in
 * them (README, "Layout"): `core/` imports no operator, prior, solver or CLI; operators, priors and
 * solvers import only `core/` (and their own folder: a prior plugin `plugins/X/` only its own
 * files, never another prior's; `plugins/mod.ts`, the list of prior plugins, lists them all);
 * `mod.ts` and the CLIs (`solve.ts`, `cli/`) may import everything;
 * `examples/` and `tests/` are users of the package and are not constrained. Package specifiers
 * (`zod`, `node:…`, `npm:…`) are free. A planted violation of each kind must be caught. The scan
 * is lexical (comments and string contents are masked first). Also: no `@example` block asserts
 * with `console.assert`, which prints but does not fail `deno test --doc`.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { ROOT } from "./subprocess.ts";

type Room = "core" | "operator" | "prior" | "solver" | "cli" | "mod" | "user";

/** Which room a repository path belongs to. */
function roomOf(path: string): Room {
  if (path === "mod.ts") return "mod";
  if (path === "solve.ts" || path.startsWith("cli/")) return "cli";
  if (path.startsWith("core/")) return "core";
  if (path.startsWith("operators/")) return "operator";
  if (path.startsWith("plugins/")) return "prior";
  if (path.startsWith("solvers/")) return "solver";
  return "user";
}

/** Why `from` may not import `to` (undefined when it may). */
function forbidden(from: string, to: string): string | undefined {
  const a = roomOf(from), b = roomOf(to);
  if (a === "mod" || a === "cli" || a === "user") return undefined;
  if (b === "core") return undefined;
  if (a === "core") return `core imports ${b === "user" ? "a file outside the package" : b}`;
  if (a !== b) return `${a} imports ${b === "user" ? "a file outside the package" : b}`;
  // plugins/mod.ts lists the prior plugins (as operators/mod.ts and solvers/mod.ts list theirs).
  if (a === "prior" && from !== "plugins/mod.ts" && from.split("/")[1] !== to.split("/")[1]) {
    return `prior plugin ${from.split("/")[1]} imports prior plugin ${to.split("/")[1]}`;
  }
  return undefined;
}

/**
 * The text with comments blanked and string/template contents masked (same length, so positions
 * still point into the original).
 */
function mask(text: string): string {
  let out = "", i = 0;
  while (i < text.length) {
    const c = text[i], d = text[i + 1];
    if (c === "/" && (d === "/" || d === "*")) {
      const end = d === "/" ? text.indexOf("\n", i) : text.indexOf("*/", i + 2) + 2;
      const stop = end <= 1 || end < 0 ? text.length : end;
      out += text.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === "\\" ? 2 : 1;
      out += c + "_".repeat(Math.max(0, Math.min(j, text.length) - i - 1)) +
        (j < text.length ? c : "");
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Module specifiers of static imports/exports and literal dynamic imports. */
function specifiers(code: string): string[] {
  const masked = mask(code);
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^;"'`]*?\bfrom\s*["']([^"']*)["']/dg,
    /\bimport\s*["']([^"']*)["']/dg,
    /\bimport\s*\(\s*["']([^"']*)["']\s*\)/dg,
  ];
  for (const p of patterns) {
    for (const m of masked.matchAll(p)) {
      const [a, b] = m.indices![1]!;
      out.push(code.slice(a, b));
    }
  }
  return out;
}

/** The code of every ```ts block inside the JSDoc comments of a file. */
function exampleBlocks(text: string): string[] {
  const blocks: string[] = [];
  for (const c of text.matchAll(/\/\*\*([\s\S]*?)\*\//g)) {
    const lines = c[1].split("\n").map((l) => l.replace(/^\s*\* ?/, ""));
    let cur: string[] | null = null;
    for (const l of lines) {
      if (cur === null && /^```(ts|typescript|js)\b/.test(l.trim())) cur = [];
      else if (cur !== null && l.trim().startsWith("```")) {
        blocks.push(cur.join("\n"));
        cur = null;
      } else if (cur !== null) cur.push(l);
    }
  }
  return blocks;
}

/** One broken rule. */
interface Violation {
  file: string;
  where: "code" | "@example";
  specifier: string;
  why: string;
}

/** Every violation of the import rule among `files` (repository path → text). */
function importViolations(files: ReadonlyMap<string, string>): Violation[] {
  const out: Violation[] = [];
  for (const [file, text] of files) {
    const sources: ["code" | "@example", string][] = [
      ["code", text],
      ...exampleBlocks(text).map((b): ["@example", string] => ["@example", b]),
    ];
    for (const [where, code] of sources) {
      for (const spec of specifiers(code)) {
        if (!spec.startsWith(".") && !spec.startsWith("/")) continue; // a package
        const target = normalize(join(dirname(file), spec)).replaceAll("\\", "/");
        const why = forbidden(file, target);
        if (why) out.push({ file, where, specifier: spec, why });
      }
    }
  }
  return out;
}

/** Every tracked-looking .ts file of the repository (no node_modules, out, bench-results). */
function repositoryFiles(): Map<string, string> {
  const files = new Map<string, string>();
  const skip = new Set(["node_modules", "out", "bench-results", ".git"]);
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      if (skip.has(e.name) || e.name.startsWith(".")) continue;
      const p = join(dir, e.name);
      if (e.isDirectory) walk(p);
      else if (e.name.endsWith(".ts")) {
        files.set(relative(ROOT, p).replaceAll("\\", "/"), Deno.readTextFileSync(p));
      }
    }
  };
  walk(ROOT);
  return files;
}

Deno.test("import rule: no violation in any .ts file or @example block", () => {
  const files = repositoryFiles();
  assert.ok(files.size > 100 && files.has("core/registry.ts") && files.has("mod.ts"));
  const v = importViolations(files);
  assert.deepEqual(
    v.map((x) => `${x.file} (${x.where}) imports ${x.specifier}: ${x.why}`),
    [],
  );
});

Deno.test("import rule: planted violations of every kind are caught", () => {
  const planted = new Map<string, string>([
    ["core/planted.ts", 'import { blurPlugin } from "../operators/blur.ts";\n'],
    ["core/planted_cli.ts", 'export { main } from "../cli/common.ts";\n'],
    [
      "core/planted_example.ts",
      '/**\n * @example\n * ```ts\n * import { latinoPlugin } from "../solvers/latino.ts";\n * ```\n */\nexport const x = 1;\n',
    ],
    ["operators/planted.ts", 'const m = await import("../mod.ts");\n'],
    ["operators/planted_prior.ts", 'import type { X } from "../plugins/diffusers/mod.ts";\n'],
    ["solvers/planted.ts", 'import {\n  a,\n  b,\n} from "../operators/sr.ts";\n'],
    [
      "plugins/builtin-gaussian/planted.ts",
      'import { diffusersPlugin } from "../diffusers/mod.ts";\n',
    ],
    ["plugins/diffusers/planted.ts", 'import "../../solvers/latino.ts";\n'],
  ]);
  const allowed = new Map<string, string>([
    [
      "operators/ok.ts",
      'import { z } from "zod";\nimport { x } from "../core/tensor.ts";\nimport { k } from "./kernels.ts";\n',
    ],
    [
      "plugins/builtin-gaussian/ok.ts",
      'import { e } from "./emit.ts";\n// import { d } from "../diffusers/mod.ts";\n',
    ],
    ["cli/ok.ts", 'import { blurPlugin } from "../operators/blur.ts";\n'],
    ["examples/ok.ts", 'import { builtinRegistry } from "../mod.ts";\n'],
    ["core/ok.ts", "const s = \"import { a } from '../operators/blur.ts'\";\n"],
  ]);
  const v = importViolations(new Map([...planted, ...allowed]));
  assert.deepEqual([...new Set(v.map((x) => x.file))].sort(), [...planted.keys()].sort());
  assert.equal(v.find((x) => x.file === "core/planted_example.ts")?.where, "@example");
  assert.match(
    v.find((x) => x.file === "plugins/builtin-gaussian/planted.ts")!.why,
    /prior plugin builtin-gaussian imports prior plugin diffusers/,
  );
});

Deno.test("@example blocks assert with node:assert (console.assert does not fail deno test --doc)", () => {
  const offenders = [...repositoryFiles()]
    .filter(([, text]) => exampleBlocks(text).some((b) => /\bconsole\.assert\s*\(/.test(b)))
    .map(([file]) => file);
  assert.deepEqual(offenders, []);
});
