/**
 * Test helper: run a command in a pseudo-terminal (util-linux `script`), answering Deno's
 * permission prompts as they appear, and return what the terminal showed (ANSI codes removed).
 * The test task grants `--allow-run=script` for this.
 */
import { ROOT } from "./subprocess.ts";

/** What a terminal session left. */
export interface TtyResult {
  /** Exit code of the command. */
  code: number;
  /** Everything the terminal showed, without colours and carriage returns. */
  output: string;
  /** How many permission prompts were answered. */
  prompts: number;
}

/** True when `script` can be started (util-linux is installed and --allow-run=script granted). */
export async function hasScript(): Promise<boolean> {
  try {
    const r = await new Deno.Command("script", {
      args: ["--version"],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return r.code === 0;
  } catch {
    return false;
  }
}

/** Quote one word for `sh -c`. */
function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * Run `argv` in a terminal in the repository root; answer the n-th `Allow?` prompt with
 * `answers[n]` (then "n" for any further prompt).
 */
export async function runInTty(argv: string[], answers: string[]): Promise<TtyResult> {
  const child = new Deno.Command("script", {
    args: ["-qec", argv.map(shellQuote).join(" "), "/dev/null"],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", TERM: "dumb" },
  }).spawn();
  const writer = child.stdin.getWriter();
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  let output = "";
  let prompts = 0;
  // Deno empties the terminal's input when it shows a prompt, so an answer typed too early is
  // lost: answer each prompt, and type the answer again while the prompt stays unanswered.
  const answered = () => (output.match(/(Granted|Denied) \w+ access/g) ?? []).length;
  const answer = () => writer.write(enc.encode(`${answers[prompts - 1] ?? "n"}\r`)).catch(() => {});
  const retry = setInterval(() => {
    if (prompts > answered()) answer();
  }, 700);
  const reader = child.stdout.getReader();
  const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      // deno-lint-ignore no-control-regex
      output += dec.decode(value, { stream: true }).replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "")
        .replaceAll("\r", "");
      const seen = output.split("Allow? [y/n/A]").length - 1;
      while (prompts < seen) {
        prompts++;
        await new Promise((r) => setTimeout(r, 150));
        await answer();
      }
    }
  } finally {
    clearTimeout(timer);
    clearInterval(retry);
    await writer.close().catch(() => {});
  }
  const status = await child.status;
  await child.stderr.cancel();
  return { code: status.code, output, prompts };
}
