/**
 * What `contained run` runs: a plain entry module (and its relative imports) from disk, or a
 * sandbox image (.tgz) read in memory by the image loader, with the manifest's default limits and
 * its digest as the run's subject.
 */
import { stat } from 'node:fs/promises';
import { ContainedError } from '../../runtime/errors.js';
import type { LimitsInput, Program } from '../../runtime/index.js';

export interface RunTarget {
  program: Program;
  limits: LimitsInput;
  subject: string | undefined;
}

export async function loadRunTarget(target: string, loadProgram: (entry: string) => Promise<Program>): Promise<RunTarget> {
  await requireFile(target);
  if (!/\.(tgz|tar\.gz)$/.test(target)) return { program: await loadProgram(target), limits: {}, subject: undefined };
  const { loadImage } = await import('../../sandbox-images/index.js');
  const image = await loadImage(target);
  const files: Record<string, string> = {};
  for (const [path, bytes] of image.files) {
    if (path !== 'manifest.json') files[path] = Buffer.from(bytes).toString('utf8');
  }
  return { program: { files, entry: image.manifest.entry }, limits: { ...(image.manifest.limits ?? {}) }, subject: image.digest };
}

/** A missing or unreadable target is the caller's mistake (USAGE, exit 2), not a broken program. */
async function requireFile(target: string): Promise<void> {
  let isFolder: boolean;
  try {
    isFolder = (await stat(target)).isDirectory();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new ContainedError('USAGE', `no such file: ${target}`);
    throw new ContainedError('USAGE', `cannot read ${target} (${typeof code === 'string' ? code : 'error'})`);
  }
  if (isFolder) throw new ContainedError('USAGE', `${target} is a folder; give the program's entry module (e.g. main.js) or an image (.tgz)`);
}
