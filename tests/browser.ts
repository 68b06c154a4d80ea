/**
 * Test helper: open a page in headless Chromium (Debian's `chromium` or `chromium-headless-shell`;
 * `.ci/run` installs it when absent) through puppeteer-core over a pipe (no network port), collect
 * console errors, page errors and failed loads, measure elements and take a full-page screenshot.
 */
import puppeteer from "puppeteer-core";

/**
 * Where a browser is looked for. Absolute paths: the test task's `--allow-run` lists exactly these
 * (a bare name there that is not on PATH makes Deno print "Failed to resolve … for allow-run" for
 * every test module; an absolute path that does not exist is silent). `tests/browser_test.ts`
 * keeps the two lists equal.
 */
export const CHROMIUM_CANDIDATES: readonly string[] = [
  "/usr/bin/chromium",
  "/usr/bin/chromium-headless-shell",
  "/usr/lib/chromium/chromium-headless-shell",
  "/usr/bin/chromium-browser",
  "/usr/bin/google-chrome",
];

/**
 * Path of a Chromium binary (CHROMIUM_PATH wins), or undefined. A CHROMIUM_PATH outside
 * {@link CHROMIUM_CANDIDATES} must also be granted with `--allow-run`: an error says so.
 */
export function findChromium(): string | undefined {
  const env = Deno.env.get("CHROMIUM_PATH");
  if (env && Deno.permissions.querySync({ name: "run", command: env }).state !== "granted") {
    throw new Error(`CHROMIUM_PATH=${env}: add it to the test task's --allow-run`);
  }
  for (const p of env ? [env, ...CHROMIUM_CANDIDATES] : CHROMIUM_CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* next */ }
  }
  return undefined;
}

/** What a page showed. */
export interface RenderedPage {
  /** Console errors, uncaught exceptions and failed requests. */
  errors: string[];
  /** Bounding boxes (page coordinates, CSS px) of the first element matching each selector. */
  boxes: Record<string, { x: number; y: number; width: number; height: number } | null>;
  /** Whether each <img> finished loading with a non-zero natural size. */
  images: { src: string; loaded: boolean }[];
  /** Full-page PNG screenshot. */
  screenshot: Uint8Array;
}

/** Load `url` in headless Chromium at the given viewport width. */
export async function renderPage(
  chromium: string,
  url: string,
  selectors: string[],
  width = 1400,
): Promise<RenderedPage> {
  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    pipe: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`page error: ${e}`));
    page.on("requestfailed", (r) => errors.push(`failed to load ${r.url()}`));
    await page.setViewport({ width, height: 900 });
    await page.goto(url, { waitUntil: "load" });
    // Page-side code as strings (the test is type-checked without the DOM library).
    const boxes: RenderedPage["boxes"] = {};
    for (const sel of selectors) {
      boxes[sel] = await page.evaluate(`(() => {
        const el = document.querySelector(${JSON.stringify(sel)});
        if (!el) return null;
        const r = el.getBoundingClientRect();
        return { x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height };
      })()`) as RenderedPage["boxes"][string];
    }
    const images = await page.evaluate(`[...document.images].map((i) => ({
      src: i.getAttribute("src") ?? "",
      loaded: i.complete && i.naturalWidth > 0,
    }))`) as RenderedPage["images"];
    const screenshot = await page.screenshot({ fullPage: true, type: "png" });
    return { errors, boxes, images, screenshot: new Uint8Array(screenshot) };
  } finally {
    await browser.close();
  }
}
