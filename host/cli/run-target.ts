/**
 * What `contained run` runs: a plain entry module (and its relative imports) from disk, or a
 * sandbox image (.tgz) read in memory by the image loader, with the manifest's default limits and
 * its digest as the run's subject.
 */
import type { LimitsInput, Program } from '../../runtime/index.js';

export interface RunTarget {
  program: Program;
  limits: LimitsInput;
  subject: string | undefined;
}

export async function loadRunTarget(target: string, loadProgram: (entry: string) => Promise<Program>): Promise<RunTarget> {
  if (!/\.(tgz|tar\.gz)$/.test(target)) return { program: await loadProgram(target), limits: {}, subject: undefined };
  const { loadImage } = await import('../../sandbox-images/index.js');
  const image = await loadImage(target);
  const files: Record<string, string> = {};
  for (const [path, bytes] of image.files) {
    if (path !== 'manifest.json') files[path] = Buffer.from(bytes).toString('utf8');
  }
  return { program: { files, entry: image.manifest.entry }, limits: { ...(image.manifest.limits ?? {}) }, subject: image.digest };
}
