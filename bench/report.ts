/** The row every benchmark reports (JSON line + table row), and the statistics they share. */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  /** What the value is compared with, measured in the same run. */
  peer?: string;
  peerValue?: number;
  ratio?: number;
  target?: string;
}

/** The p-th percentile of samples (nearest rank). */
export function pct(samples: readonly number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export function round(n: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
