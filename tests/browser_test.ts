/**
 * The test task may start every browser `tests/browser.ts` looks for, and names them by absolute
 * path (a bare name missing from PATH makes Deno print "Failed to resolve … for allow-run" once per
 * test module).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CHROMIUM_CANDIDATES } from "./browser.ts";
import { ROOT } from "./subprocess.ts";

Deno.test("test task: --allow-run lists exactly the browser candidates, by absolute path", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(join(ROOT, "deno.json"))).tasks;
  const flag = (tasks.test as string).split(" ").find((a) => a.startsWith("--allow-run="));
  assert.ok(flag, "the test task has no --allow-run");
  const allowed = flag.slice("--allow-run=".length).split(",");
  const browsers = allowed.filter((c) => /chrom/.test(c));
  assert.deepEqual(browsers, [...CHROMIUM_CANDIDATES]);
  for (const c of browsers) assert.ok(c.startsWith("/"), `${c} is not an absolute path`);
});
