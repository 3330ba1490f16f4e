import assert from "node:assert/strict";
import { plot } from "./plot.ts";

Deno.test("plot: a chart description becomes a PNG of the chart's size", async () => {
  const out = await Deno.makeTempFile({ suffix: ".png" });
  try {
    await plot({
      title: "fan-out",
      x: { label: "subscribers", log: true },
      y: { label: "ms" },
      series: [
        { label: "ipush", points: [[100, 5], [1000, 40], [10000, 300]] },
        { label: "nchan", points: [[100, 7], [10000, 280]] },
      ],
    }, out);
    const png = await Deno.readFile(out);
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], "a PNG signature");
    const view = new DataView(png.buffer);
    // The IHDR chunk: width and height of the chart's element.
    assert.ok(view.getUint32(16) >= 900 && view.getUint32(20) >= 500, "the chart's size");
  } finally {
    await Deno.remove(out);
  }
});
