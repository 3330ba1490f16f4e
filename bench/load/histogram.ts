/**
 * A log-linear latency histogram that merges exactly across processes.
 *
 * Values are recorded in microseconds. Below 64 µs every value has its own bucket; above,
 * each power of two is split into 64 linear buckets, so any bucket is at most 1/64 (1.6 %)
 * wide relative to its value. Children ship their buckets to the parent, which adds them:
 * percentiles of the merged histogram are then the percentiles of all samples together,
 * which averaging per-process percentiles would not give.
 *
 * @module
 */

const SUB_BITS = 6;
const SUB = 1 << SUB_BITS;
/** Values are clamped to 2^31 - 1 µs (about 36 minutes): far beyond any run. */
const MAX_VALUE = 0x7fffffff;
const BUCKETS = (31 - SUB_BITS + 1) * SUB;

/** Sparse wire form: `[bucketIndex, count, bucketIndex, count, ...]` plus exact extremes. */
export interface HistogramData {
  buckets: number[];
  count: number;
  sumUs: number;
  minUs: number;
  maxUs: number;
}

/** The bucket a value (µs, non-negative integer) falls in. */
export function bucketOf(us: number): number {
  if (us < SUB) return us;
  const top = 31 - Math.clz32(us);
  const shift = top - SUB_BITS;
  return (shift + 1) * SUB + ((us >>> shift) - SUB);
}

/** The lowest value of a bucket and its width, in µs. */
export function bucketRange(index: number): [low: number, width: number] {
  if (index < 2 * SUB) return [index, 1];
  const shift = Math.floor(index / SUB) - 1;
  return [((index % SUB) + SUB) * 2 ** shift, 2 ** shift];
}

/** Latency histogram; see the module doc. */
export class Histogram {
  #counts = new Float64Array(BUCKETS);
  count = 0;
  sumUs = 0;
  minUs = Infinity;
  maxUs = 0;

  /** Records one value given in milliseconds (fractions kept to the microsecond). */
  recordMs(ms: number): void {
    const us = Math.min(MAX_VALUE, Math.max(0, Math.round(ms * 1000)));
    this.#counts[bucketOf(us)]++;
    this.count++;
    this.sumUs += us;
    if (us < this.minUs) this.minUs = us;
    if (us > this.maxUs) this.maxUs = us;
  }

  /** Adds another histogram's samples (from {@linkcode Histogram.toData}). */
  merge(data: HistogramData): void {
    for (let i = 0; i < data.buckets.length; i += 2) {
      this.#counts[data.buckets[i]] += data.buckets[i + 1];
    }
    this.count += data.count;
    this.sumUs += data.sumUs;
    if (data.count > 0) {
      this.minUs = Math.min(this.minUs, data.minUs);
      this.maxUs = Math.max(this.maxUs, data.maxUs);
    }
  }

  /**
   * The q-quantile (0 < q ≤ 1) in milliseconds: the middle of the bucket holding the sample
   * of rank ceil(q·count), kept within the exact min and max. NaN when empty.
   */
  percentileMs(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.#counts[i];
      if (seen >= rank) {
        const [low, width] = bucketRange(i);
        const mid = low + (width - 1) / 2;
        return Math.min(this.maxUs, Math.max(this.minUs, mid)) / 1000;
      }
    }
    return this.maxUs / 1000;
  }

  /** Mean in milliseconds; NaN when empty. */
  meanMs(): number {
    return this.count === 0 ? NaN : this.sumUs / this.count / 1000;
  }

  /** The sparse wire form. */
  toData(): HistogramData {
    const buckets: number[] = [];
    for (let i = 0; i < BUCKETS; i++) {
      if (this.#counts[i] > 0) buckets.push(i, this.#counts[i]);
    }
    return {
      buckets,
      count: this.count,
      sumUs: this.sumUs,
      minUs: this.count === 0 ? 0 : this.minUs,
      maxUs: this.maxUs,
    };
  }

  /** Empties the histogram (children reset after each shipped delta). */
  reset(): void {
    this.#counts.fill(0);
    this.count = 0;
    this.sumUs = 0;
    this.minUs = Infinity;
    this.maxUs = 0;
  }

  /** p50/p99/p999/max/mean in milliseconds, rounded for reports. */
  summary(): LatencySummary {
    const r = (v: number) => Number.isNaN(v) ? null : Math.round(v * 1000) / 1000;
    return {
      count: this.count,
      p50_ms: r(this.percentileMs(0.5)),
      p90_ms: r(this.percentileMs(0.9)),
      p99_ms: r(this.percentileMs(0.99)),
      p999_ms: r(this.percentileMs(0.999)),
      max_ms: r(this.count === 0 ? NaN : this.maxUs / 1000),
      mean_ms: r(this.meanMs()),
    };
  }
}

/** What reports print of a histogram; null where there were no samples. */
export interface LatencySummary {
  count: number;
  p50_ms: number | null;
  p90_ms: number | null;
  p99_ms: number | null;
  p999_ms: number | null;
  max_ms: number | null;
  mean_ms: number | null;
}
