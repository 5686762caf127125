/**
 * `npm run build:examples`: builds every `sandbox-images/examples/<name>/image/` into
 * `sandbox-images/examples/dist/<name>.tgz` and prints name, digest and size. Reproducible: run it
 * twice and the archives are byte-identical.
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ContainedError } from '../runtime/errors.js';
import { writeImage } from './build.js';

export const EXAMPLES_DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'examples');

export interface BuiltExample {
  name: string;
  file: string;
  digest: string;
  bytes: number;
}

/** Names of the example folders that have an `image/manifest.json`. */
export async function exampleNames(examplesDir = EXAMPLES_DIR): Promise<string[]> {
  const names: string[] = [];
  for (const name of (await readdir(examplesDir)).sort()) {
    const manifest = path.join(examplesDir, name, 'image', 'manifest.json');
    if (await stat(manifest).then((s) => s.isFile(), () => false)) names.push(name);
  }
  return names;
}

/** Build every example into `outDir` (default `examples/dist`). */
export async function buildExamples(examplesDir = EXAMPLES_DIR, outDir = path.join(examplesDir, 'dist')): Promise<BuiltExample[]> {
  await mkdir(outDir, { recursive: true });
  const built: BuiltExample[] = [];
  for (const name of await exampleNames(examplesDir)) {
    const file = path.join(outDir, `${name}.tgz`);
    const { digest, bytes } = await writeImage(path.join(examplesDir, name, 'image'), file);
    built.push({ name, file, digest, bytes });
  }
  return built;
}

async function main(): Promise<number> {
  try {
    const built = await buildExamples();
    const width = Math.max(...built.map((b) => b.name.length));
    for (const b of built) process.stdout.write(`${b.name.padEnd(width)}  ${b.digest}  ${String(b.bytes).padStart(6)} bytes  ${path.relative(process.cwd(), b.file)}\n`);
    return 0;
  } catch (error) {
    const code = error instanceof ContainedError ? error.code : 'INTERNAL';
    process.stderr.write(`${code}: ${(error as Error).message}\n`);
    return 1;
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  void main().then((code) => {
    process.exitCode = code;
  });
}
