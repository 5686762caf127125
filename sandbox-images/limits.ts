/**
 * Size and shape limits applied when building and when loading an image. Every limit is a named
 * option with a safe default and its unit in its name; the builder uses the same defaults as the
 * loader, so an image that builds also loads.
 *
 * How it fails: a limit that is not a positive safe integer is INVALID_ARGUMENT (a host
 * configuration mistake, reported before any archive byte is read).
 */
import { z } from 'zod';
import { ContainedError } from '../runtime/errors.js';

export interface ImageLimits {
  /** Compressed bytes of the `.tgz` (read before decompression). Exceeding: IMAGE_TOO_LARGE. */
  maxArchiveBytes: number;
  /**
   * Decompressed bytes of the whole tar stream (headers, padding, every entry), counted as they
   * stream out of gunzip: the absolute gzip-bomb cap. Exceeding: IMAGE_TOO_LARGE.
   */
  maxTotalBytes: number;
  /** Bytes of one file, declared or streamed. Exceeding: IMAGE_FILE_TOO_LARGE. */
  maxFileBytes: number;
  /** Entries (files and directories; extended headers excluded). Exceeding: IMAGE_TOO_MANY_FILES. */
  maxFiles: number;
  /** Path segments (`agent/main.js` is 2). Exceeding: IMAGE_PATH_TOO_DEEP. */
  maxDepth: number;
  /** UTF-8 bytes of one path. Exceeding: IMAGE_PATH_INVALID. */
  maxPathBytes: number;
}

const MiB = 1024 * 1024;

export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxArchiveBytes: 32 * MiB,
  maxTotalBytes: 32 * MiB,
  maxFileBytes: 8 * MiB,
  maxFiles: 1000,
  maxDepth: 16,
  maxPathBytes: 255,
});

const limit = z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional();
const limitsSchema = z.object({
  maxArchiveBytes: limit,
  maxTotalBytes: limit,
  maxFileBytes: limit,
  maxFiles: limit,
  maxDepth: limit,
  maxPathBytes: limit,
});

/** Defaults overlaid with the given limits (other keys of `options` are ignored). */
export function resolveLimits(options: Partial<ImageLimits> = {}): ImageLimits {
  const parsed = limitsSchema.safeParse(options);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ContainedError('INVALID_ARGUMENT', `image limit ${issue?.path.join('.') ?? ''} must be a positive integer`, {
      data: { path: issue?.path.join('.') },
    });
  }
  const out: ImageLimits = { ...DEFAULT_IMAGE_LIMITS };
  for (const key of Object.keys(out) as (keyof ImageLimits)[]) {
    const value = parsed.data[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
