/**
 * Child process for loader tests that need a process of their own: loads each archive listed in
 * the JSON file given as argv[2] (`[{ file, options }]`) and prints one JSON line with the outcome
 * of each, the RSS before loading and the peak RSS of the process. Run with a cwd and TMPDIR the
 * parent watches, to prove the loader writes nothing.
 */
import { readFileSync } from 'node:fs';
import { loadImage } from '../../sandbox-images/load.js';

interface Job {
  file: string;
  options?: Record<string, unknown>;
}

const jobs = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as Job[];
const baselineRssBytes = process.memoryUsage().rss;
const results: { file: string; code: string; ms: number; constructor: string }[] = [];
for (const job of jobs) {
  const started = performance.now();
  try {
    await loadImage(job.file, job.options ?? {});
    results.push({ file: job.file, code: 'OK', ms: performance.now() - started, constructor: '' });
  } catch (error) {
    const e = error as { code?: string; constructor?: { name?: string } };
    results.push({ file: job.file, code: e.code ?? 'NO_CODE', ms: performance.now() - started, constructor: e.constructor?.name ?? '' });
  }
}
const maxRssBytes = process.resourceUsage().maxRSS * 1024;
process.stdout.write(`${JSON.stringify({ baselineRssBytes, maxRssBytes, results })}\n`);
