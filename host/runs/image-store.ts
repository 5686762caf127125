/**
 * Uploaded images on disk: `<dataDir>/images/<hex>.tgz`, named by the image digest (the digest of
 * the canonical file listing, see sandbox-images/digest.ts — not of the archive bytes).
 *
 * Writes are atomic: a temporary file in the same folder, fsync, rename; a reader sees the old
 * file or the new one, never half of one. The file name is built only from a digest that matched
 * `sha256:<64 hex>`, so no caller-chosen text ever reaches a path. A later upload with the same
 * digest replaces the file (same agent code; it may carry other signatures).
 *
 * Reading back is not trusted either: the host loads the stored bytes again with
 * `expectedDigest`, so a file changed on disk fails `IMAGE_DIGEST_MISMATCH`.
 *
 * Which platform clients uploaded an image (`createImageClients`): one empty marker file per
 * client, `<dataDir>/images/clients/<hex>/<sha256 of the client name>`, so concurrent uploads never
 * race on a shared list and no client-chosen text reaches a path. A client runs by digest only the
 * images it uploaded (host/api/routes.ts); the others' are `NOT_FOUND`, as if never uploaded.
 */
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ContainedError } from '../../runtime/errors.js';
import { loadImage, type LoadedImage, type LoadImageOptions } from '../../sandbox-images/load.js';

const DIGEST = /^sha256:([0-9a-f]{64})$/;

export interface ImageStore {
  readonly dir: string;
  /** Store the archive under its digest (atomically). */
  put(digest: string, bytes: Uint8Array): Promise<void>;
  /** The stored archive, or undefined. INVALID_ARGUMENT for a malformed digest. */
  get(digest: string): Promise<Buffer | undefined>;
  /** Validate an uploaded archive with `loadImage` (IMAGE_* on refusal), then store it. */
  add(bytes: Uint8Array, options: LoadImageOptions): Promise<LoadedImage>;
  /** A stored image, loaded and checked against its digest (cached); NOT_FOUND if none. */
  load(digest: string, options: LoadImageOptions): Promise<LoadedImage>;
}

/** Loaded images kept in memory, most recently used first out last. */
export const IMAGE_CACHE_ENTRIES = 32;

export function fileNameFor(digest: string): string {
  const match = DIGEST.exec(digest);
  if (!match) throw new ContainedError('INVALID_ARGUMENT', 'a digest looks like sha256:<64 lower-case hex digits>', { data: { path: ['digest'] } });
  return `${match[1] as string}.tgz`;
}

/** The answer for a digest that names no image the caller may run (the same whether stored or not). */
export function noSuchImage(digest: string): ContainedError {
  return new ContainedError('NOT_FOUND', `no image ${digest} on this host (upload it with POST /v1/images)`);
}

export function createImageStore(dataDir: string): ImageStore {
  const dir = path.join(dataDir, 'images');
  let ready: Promise<unknown> | undefined;
  const cache = new Map<string, LoadedImage>();
  const remember = (image: LoadedImage): LoadedImage => {
    cache.delete(image.digest);
    cache.set(image.digest, image);
    if (cache.size > IMAGE_CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
    return image;
  };
  const store: ImageStore = {
    dir,
    async put(digest, bytes) {
      const target = path.join(dir, fileNameFor(digest));
      ready ??= mkdir(dir, { recursive: true, mode: 0o700 });
      await ready;
      const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
      const handle = await open(temp, 'wx', 0o600);
      try {
        await handle.writeFile(bytes);
        await handle.sync();
      } catch (error) {
        await handle.close();
        await rm(temp, { force: true });
        throw error;
      }
      await handle.close();
      try {
        await rename(temp, target);
      } catch (error) {
        await rm(temp, { force: true });
        throw error;
      }
    },
    async get(digest) {
      const file = path.join(dir, fileNameFor(digest));
      try {
        return await readFile(file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    async add(bytes, options) {
      const image = await loadImage(bytes, options);
      await store.put(image.digest, bytes);
      return remember(image);
    },
    async load(digest, options) {
      fileNameFor(digest);
      const cached = cache.get(digest);
      if (cached) return remember(cached);
      const bytes = await store.get(digest);
      if (bytes === undefined) throw noSuchImage(digest);
      return remember(await loadImage(bytes, { ...options, expectedDigest: digest }));
    },
  };
  return store;
}

/** Which platform clients uploaded which stored image. */
export interface ImageClients {
  /** Record that `client` uploaded `digest` (idempotent). */
  add(digest: string, client: string): Promise<void>;
  /** Whether `client` uploaded `digest`. False for anything it cannot read. */
  has(digest: string, client: string): Promise<boolean>;
}

export function createImageClients(dataDir: string): ImageClients {
  const root = path.join(dataDir, 'images', 'clients');
  const marker = (digest: string, client: string): { dir: string; file: string } => {
    const dir = path.join(root, fileNameFor(digest).slice(0, -'.tgz'.length));
    return { dir, file: path.join(dir, createHash('sha256').update(client, 'utf8').digest('hex')) };
  };
  return {
    async add(digest, client) {
      const { dir, file } = marker(digest, client);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(file, '', { mode: 0o600 });
    },
    async has(digest, client) {
      const { file } = marker(digest, client);
      try {
        await access(file);
        return true;
      } catch {
        return false;
      }
    },
  };
}
