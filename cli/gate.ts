/**
 * Permissions up front, for every command-line entry point.
 *
 * Import this module FIRST in an entry script (`import "./cli/gate.ts";`). When that script is the
 * main module, the permissions its `deno.json` task grants are checked before any other module is
 * evaluated — before onnxruntime-node or sharp load their native libraries, which would otherwise
 * die with a `NotCapable` stack trace. In a terminal, each missing permission is asked for with
 * `Deno.permissions.requestSync`, after one line saying why it is needed; without a terminal (or
 * when refused) one line names the command to run instead, and the process exits with code 2.
 * When the main module is anything else (a test, a library user) this module does nothing.
 *
 * The permission set of an entry is read from its task in `deno.json` (imported as a JSON module,
 * which needs no permission), so the tasks stay the one place where permissions are written.
 * Write access is asked for narrowly: the folder of `--out` when it is given.
 *
 * It must stay free of imports that load native code, and synchronous (no top-level await: a
 * sibling import would be evaluated while it waits).
 *
 * @module
 */
import config from "../deno.json" with { type: "json" };

/** One `deno run` command line of a task, split into its parts. */
export interface TaskCommand {
  /** Task name in deno.json. */
  task: string;
  /** Deno flags before the script (permission flags, --v8-flags, …). */
  flags: string[];
  /** Script path relative to the project root, e.g. `solve.ts` or `cli/degrade.ts`. */
  script: string;
  /** Fixed arguments after the script (e.g. the demo's options). */
  args: string[];
}

/**
 * Split a task's command into its `deno run` parts (the last `deno run` of an `&&` chain); null
 * when the task runs no script.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseTaskCommand } from "./gate.ts";
 * const c = parseTaskCommand("t", "deno install -q && deno run --allow-read cli/x.ts --fast");
 * assert.deepEqual(c, { task: "t", flags: ["--allow-read"], script: "cli/x.ts", args: ["--fast"] });
 * ```
 */
export function parseTaskCommand(task: string, command: string): TaskCommand | null {
  const parts = command.split("&&").map((s) => s.trim().split(/\s+/));
  for (let p = parts.length - 1; p >= 0; p--) {
    const words = parts[p];
    if (words[0] !== "deno" || words[1] !== "run") continue;
    const i = words.findIndex((w, k) => k >= 2 && !w.startsWith("-"));
    if (i < 0) return null;
    return { task, flags: words.slice(2, i), script: words[i], args: words.slice(i + 1) };
  }
  return null;
}

/**
 * Every task of `deno.json` that runs a script, in file order.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { entryTasks } from "./gate.ts";
 * assert.ok(entryTasks().some((t) => t.task === "solve" && t.script === "solve.ts"));
 * ```
 */
export function entryTasks(): TaskCommand[] {
  const tasks = (config as { tasks?: Record<string, string> }).tasks ?? {};
  return Object.entries(tasks).map(([k, v]) => parseTaskCommand(k, v))
    .filter((t): t is TaskCommand => t !== null);
}

/**
 * The task that runs `script` (relative to the project root) with no fixed arguments, preferring
 * the one named like the script.
 */
export function taskForScript(script: string): TaskCommand | undefined {
  const all = entryTasks().filter((t) => t.script === script);
  const base = script.replace(/^cli\//, "").replace(/\.ts$/, "");
  return all.find((t) => t.task === base && t.args.length === 0) ??
    all.find((t) => t.args.length === 0) ?? all[0];
}

/** A permission to check, with the flag that grants it and why it is needed. */
export interface Need {
  /** What to query/request. */
  descriptor: Deno.PermissionDescriptor;
  /** The task's flag, e.g. `--allow-ffi`. */
  flag: string;
  /** One clause: why this entry needs it. */
  why: string;
}

const WHY: Record<string, string> = {
  read: "to read its inputs, models and the npm packages' files",
  write: "to write its output",
  ffi: "to load ONNX Runtime and sharp, which are native libraries",
  env: "because ONNX Runtime and sharp read environment variables",
  sys: "to size thread pools from the CPU count and memory",
  run: "to start a helper process",
  net: "to download packages",
};

/**
 * The permissions a task's flags grant, as descriptors (write narrowed to the folder of `out`
 * when the flag grants all writes and an output path is known).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { needsOf } from "./gate.ts";
 * const n = needsOf(["--allow-read", "--allow-run=python3,deno", "--v8-flags=--expose-gc"]);
 * assert.deepEqual(n.map((x) => x.descriptor), [
 *   { name: "read" },
 *   { name: "run", command: "python3" },
 *   { name: "run", command: "deno" },
 * ]);
 * ```
 */
export function needsOf(flags: readonly string[], out?: string): Need[] {
  const needs: Need[] = [];
  for (const flag of flags) {
    const m = /^--allow-(read|write|ffi|env|sys|run|net)(?:=(.*))?$/.exec(flag);
    if (!m) continue;
    const name = m[1] as "read" | "write" | "ffi" | "env" | "sys" | "run" | "net";
    const list = m[2]?.split(",").filter((s) => s) ?? [];
    const why = WHY[name];
    const add = (descriptor: Deno.PermissionDescriptor) => needs.push({ descriptor, flag, why });
    if (list.length === 0) {
      if (name === "write" && out !== undefined) add({ name, path: out });
      else add({ name } as Deno.PermissionDescriptor);
      continue;
    }
    for (const item of list) {
      if (name === "read" || name === "write") add({ name, path: item });
      else if (name === "ffi") add({ name, path: item });
      else if (name === "env") add({ name, variable: item });
      else if (name === "sys") add({ name, kind: item as Deno.SysPermissionDescriptor["kind"] });
      else if (name === "run") add({ name, command: item });
      else add({ name, host: item });
    }
  }
  return needs;
}

/** The value of `--out` in command-line arguments (`--out X` or `--out=X`). */
function outArg(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--out") return args[i + 1];
    if (args[i].startsWith("--out=")) return args[i].slice(6);
  }
  return undefined;
}

/** The folder a run writes into: the parent of `--out` (outputs are renamed from a sibling). */
function outFolder(out: string | undefined): string | undefined {
  if (out === undefined || out === "") return undefined;
  const cwd = (() => {
    try {
      return Deno.cwd();
    } catch {
      return undefined;
    }
  })();
  if (cwd === undefined && !out.startsWith("/")) return undefined;
  const abs = out.startsWith("/") ? out : `${cwd}/${out}`;
  const parts = abs.split("/").filter((s) => s && s !== ".");
  const stack: string[] = [];
  for (const p of parts) {
    if (p === "..") stack.pop();
    else stack.push(p);
  }
  stack.pop();
  return "/" + stack.join("/");
}

function describe(d: Deno.PermissionDescriptor): string {
  const r = d as unknown as Record<string, unknown>;
  const scope = r.path ?? r.command ?? r.variable ?? r.host ?? r.kind;
  return scope === undefined ? d.name : `${d.name} (${scope})`;
}

/**
 * The one-line refusal for a missing permission, naming what to run instead.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { refusal } from "./gate.ts";
 * const line = refusal(
 *   { task: "solve", flags: ["--allow-ffi"], script: "solve.ts", args: [] },
 *   { descriptor: { name: "ffi" }, flag: "--allow-ffi", why: "to load native code" },
 * );
 * assert.match(line, /^error: solve\.ts needs ffi permission to load native code: run `deno task solve …`/);
 * ```
 */
export function refusal(task: TaskCommand, need: Need): string {
  return `error: ${task.script} needs ${describe(need.descriptor)} permission ${need.why}: ` +
    `run \`deno task ${task.task} …\` (or \`deno run ${
      task.flags.join(" ")
    } ${task.script} …\`) instead`;
}

function interactive(): boolean {
  try {
    if (
      Deno.permissions.querySync({ name: "env", variable: "DENO_NO_PROMPT" }).state === "granted"
    ) {
      if (Deno.env.get("DENO_NO_PROMPT")) return false;
    }
    return Deno.stdin.isTerminal() && Deno.stderr.isTerminal();
  } catch {
    return false;
  }
}

/**
 * Check (and in a terminal, ask for) every permission `task` grants; on a refusal print one line
 * and exit with code 2. Returns normally when everything is granted.
 */
export function ensurePermissions(task: TaskCommand, args: readonly string[]): void {
  const needs = needsOf(task.flags, outFolder(outArg(args)));
  const missing = needs.filter((n) => Deno.permissions.querySync(n.descriptor).state !== "granted");
  if (missing.length === 0) return;
  const canAsk = interactive();
  for (const need of missing) {
    if (canAsk) {
      console.error(`${task.script} needs ${describe(need.descriptor)} access ${need.why}.`);
      if (Deno.permissions.requestSync(need.descriptor).state === "granted") continue;
    }
    console.error(refusal(task, need));
    Deno.exit(2);
  }
}

/** The entry script's path relative to the project root, when the main module is in it. */
function mainScript(): string | undefined {
  const root = new URL("../", import.meta.url).href;
  const main = Deno.mainModule;
  return main.startsWith(root) ? decodeURIComponent(main.slice(root.length)) : undefined;
}

// Runs once, when an entry script imports this module first.
const script = mainScript();
const entry = script === undefined ? undefined : taskForScript(script);
if (entry) ensurePermissions(entry, Deno.args);
