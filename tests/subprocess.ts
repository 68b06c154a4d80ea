/**
 * Test helper: run a deno.json task as a subprocess (so the task's permission set is exercised).
 * The test task grants `--allow-run=python3,deno`; `deno` on PATH is the running binary (npx puts
 * it there).
 */
import { fileURLToPath } from "node:url";

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("..", import.meta.url));

/** The deno binary subprocesses run (this one when allowed, else `deno` from PATH). */
export const DENO: string =
  Deno.permissions.querySync({ name: "run", command: Deno.execPath() }).state ===
      "granted"
    ? Deno.execPath()
    : "deno";

/** What a finished subprocess left. */
export interface TaskResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** `deno task -q NAME ARGS…` in the repository root, without colours. */
export async function task(name: string, ...args: string[]): Promise<TaskResult> {
  const r = await new Deno.Command(DENO, {
    args: ["task", "-q", name, ...args],
    cwd: ROOT,
    stdin: "null",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}
