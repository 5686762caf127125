/**
 * Builds an image from a folder: reads every file (never following links), applies the format's
 * rules, and packs a reproducible `.tgz` (see pack.ts). Building the same folder twice gives the
 * same bytes, whatever the files' mtimes, owners, modes or the order `readdir` returns them in.
 *
 * Refuses (with the loader's codes, before writing anything): symbolic links and hard-linked files
 * (IMAGE_LINK), sockets/FIFOs/devices (IMAGE_SPECIAL_FILE), executables, `node_modules` and
 * extensions other than .js .mjs .json .txt .md .csv (IMAGE_FILE_TYPE), a file named like the
 * reserved signatures entry (IMAGE_PATH_INVALID), a folder over the size limits, a missing or
 * invalid manifest, an entry module that is not there. Empty folders are not recorded.
 *
 * How it fails: ContainedError only; NOT_FOUND when the folder does not exist.
 */
import { constants as fsConstants } from 'node:fs';
import { lstat, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ContainedError } from '../runtime/errors.js';
import { computeDigest } from './digest.js';
import { resolveLimits } from './limits.js';
import type { ImageLimits } from './limits.js';
import { packImage } from './pack.js';
import { SIGNATURES_PATH, checkDirectoryType, checkFileType, describePath } from './paths.js';
import { orThrow } from './validate.js';

export type BuildImageOptions = Partial<ImageLimits>;

/** Build the image of folder `dir`; returns the `.tgz` bytes. */
export async function buildImage(dir: string, options: BuildImageOptions = {}): Promise<Buffer> {
  const limits = resolveLimits(options);
  const files = await readImageFolder(dir, limits);
  return packImage(files, limits);
}

/** Build the image of `dir` into the file `out` (written atomically); returns digest and size. */
export async function writeImage(
  dir: string,
  out: string,
  options: BuildImageOptions = {},
): Promise<{ digest: string; bytes: number; archive: Buffer }> {
  const limits = resolveLimits(options);
  const files = await readImageFolder(dir, limits);
  const archive = packImage(files, limits);
  await writeFileAtomic(out, archive);
  return { digest: computeDigest(files).digest, bytes: archive.length, archive };
}

/** Write via a temporary file in the same folder and a rename, so readers never see half a file. */
export async function writeFileAtomic(file: string, data: Uint8Array): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    await writeFile(temp, data, { flag: 'wx' });
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw new ContainedError('INVALID_ARGUMENT', `cannot write ${describePath(file)}: ${(error as Error).message}`, { cause: error });
  }
}

/** Every regular file under `dir` by POSIX relative path, checked against the format. */
export async function readImageFolder(dir: string, limits: ImageLimits): Promise<Map<string, Buffer>> {
  let rootStat;
  try {
    rootStat = await lstat(dir);
  } catch (cause) {
    throw new ContainedError('NOT_FOUND', `folder ${describePath(dir)} does not exist`, { cause });
  }
  if (!rootStat.isDirectory()) throw new ContainedError('INVALID_ARGUMENT', `${describePath(dir)} is not a folder`);
  const files = new Map<string, Buffer>();
  let total = 0;
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(path.join(dir, rel))).sort();
    for (const name of names) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const stat = await lstat(path.join(dir, childRel));
      if (stat.isSymbolicLink()) throw new ContainedError('IMAGE_LINK', `${describePath(childRel)} is a symbolic link`);
      if (stat.isDirectory()) {
        orThrow(checkDirectoryType(childRel));
        await walk(childRel);
        continue;
      }
      if (!stat.isFile()) throw new ContainedError('IMAGE_SPECIAL_FILE', `${describePath(childRel)} is not a regular file`);
      if (stat.nlink > 1) throw new ContainedError('IMAGE_LINK', `${describePath(childRel)} is a hard link (${stat.nlink} names)`);
      if (childRel === SIGNATURES_PATH) {
        throw new ContainedError('IMAGE_PATH_INVALID', `${SIGNATURES_PATH} is reserved for signatures (use \`contained image sign\`)`);
      }
      orThrow(checkFileType(childRel, stat.mode));
      if (files.size >= limits.maxFiles) throw new ContainedError('IMAGE_TOO_MANY_FILES', `the folder has more than ${limits.maxFiles} files`);
      if (stat.size > limits.maxFileBytes) {
        throw new ContainedError('IMAGE_FILE_TOO_LARGE', `${describePath(childRel)} has ${stat.size} bytes (limit ${limits.maxFileBytes})`);
      }
      total += stat.size;
      if (total > limits.maxTotalBytes) throw new ContainedError('IMAGE_TOO_LARGE', `the folder holds more than ${limits.maxTotalBytes} bytes`);
      files.set(childRel, await readRegularFile(path.join(dir, childRel), childRel));
    }
  };
  await walk('');
  return files;
}

/** Read a file that must still be the regular, unlinked file `lstat` saw (no swap for a link or FIFO). */
async function readRegularFile(file: string, rel: string): Promise<Buffer> {
  const handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK).catch((cause: unknown) => {
    if ((cause as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new ContainedError('IMAGE_LINK', `${describePath(rel)} changed into a link while building`, { cause });
    }
    throw new ContainedError('INVALID_ARGUMENT', `cannot read ${describePath(rel)}: ${(cause as Error).message}`, { cause });
  });
  try {
    const stat = await handle.stat();
    if (!stat.isFile() || stat.nlink > 1) throw new ContainedError('IMAGE_SPECIAL_FILE', `${describePath(rel)} changed while building`);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}
