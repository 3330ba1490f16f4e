/**
 * Draws figures as PNG: a chart description (JSON) in, a picture out, rendered by uPlot (the
 * chart library the dashboard serves) in the project's headless Chromium, so plots need no
 * other tool and look the same on every machine of this kind.
 *
 * ```sh
 * deno run -A bench/plot.ts docs/plots/fanout.json docs/plots/fanout.png
 * ```
 *
 * The description: `{"title", "x": {"label", "log"?}, "y": {"label", "log"?},
 * "series": [{"label", "points": [[x, y], ...], "colour"?, "dash"?}, ...]}`. Series may have
 * different x values;
 * a missing point is a gap.
 *
 * @module
 */

import { launchBrowser } from "../scripts/chromium.ts";

/** One axis. */
export interface Axis {
  label: string;
  /** Logarithmic (base 10). */
  log?: boolean;
}

/** A chart to draw. */
export interface Chart {
  title: string;
  x: Axis;
  y: Axis;
  series: Series[];
}

/** One line of a chart. */
export interface Series {
  label: string;
  points: [number, number][];
  /** A CSS colour; by default the next of the palette. */
  colour?: string;
  /** Dashed, as uPlot's `dash` (segment lengths in px): e.g. a p50 beside its p99. */
  dash?: number[];
}

const UPLOT = new URL("../node_modules/uplot/dist/", import.meta.url);
const COLOURS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2"];

/** The chart as one self-contained HTML page. */
function page(chart: Chart): string {
  const xs = [...new Set(chart.series.flatMap((s) => s.points.map(([x]) => x)))].sort((a, b) =>
    a - b
  );
  const data = [
    xs,
    ...chart.series.map((s) => {
      const byX = new Map(s.points);
      return xs.map((x) => byX.get(x) ?? null);
    }),
  ];
  const options = {
    title: chart.title,
    width: 900,
    height: 500,
    scales: { x: { time: false, distr: chart.x.log ? 3 : 1 }, y: { distr: chart.y.log ? 3 : 1 } },
    // The y axis wide enough for "100,000" beside its label.
    axes: [{ label: chart.x.label }, { label: chart.y.label, size: 80 }],
    // A still picture: the legend names the series, without a cursor's values.
    legend: { live: false },
    series: [
      {},
      ...chart.series.map((s, i) => ({
        label: s.label,
        stroke: s.colour ?? COLOURS[i % COLOURS.length],
        dash: s.dash,
        width: 2,
        points: { show: true, size: 6 },
        spanGaps: true,
      })),
    ],
  };
  return `<!doctype html><meta charset="utf-8">
<style>${Deno.readTextFileSync(new URL("uPlot.min.css", UPLOT))}
body { margin: 0; padding: 12px; font: 14px system-ui, sans-serif; background: #fff; }</style>
<div id="chart"></div>
<script>${Deno.readTextFileSync(new URL("uPlot.iife.min.js", UPLOT))}</script>
<script>new uPlot(${JSON.stringify(options)}, ${JSON.stringify(data)},
  document.getElementById("chart"));</script>`;
}

/** Renders `chart` to a PNG file at `out`. */
export async function plot(chart: Chart, out: string): Promise<void> {
  const browser = await launchBrowser();
  try {
    const tab = await browser.newPage({ viewport: { width: 930, height: 560 } });
    await tab.setContent(page(chart));
    await tab.locator("#chart canvas").waitFor();
    await tab.locator("#chart").screenshot({ path: out });
  } finally {
    await browser.close();
  }
}

if (import.meta.main) {
  const [input, out] = Deno.args;
  if (!input || !out) {
    console.error("usage: deno run -A bench/plot.ts CHART.json OUT.png");
    Deno.exit(2);
  }
  await plot(JSON.parse(await Deno.readTextFile(input)), out);
  console.log(`wrote ${out}`);
}
