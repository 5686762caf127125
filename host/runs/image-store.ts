/**
 * Uploaded images, kept in the host's store by digest (Store.putImage; the digest of the canonical
 * file listing, see sandbox-images/digest.ts — not of the archive bytes), so with several hosts on
 * one PostgreSQL an image uploaded to one host runs on any. A later upload with the same digest
 * replaces the archive (same agent code; it may carry other signatures).
 *
 * Images stored as files by earlier versions (`<dataDir>/images/<hex>.tgz`, and the client markers
 * `<dataDir>/images/clients/<hex>/<sha256 of the client name>`) are still read when the store has
 * none; nothing is written there any more. The file name is built only from a digest that matched
 * `sha256:<64 hex>`, so no caller-chosen text ever reaches a path.
 *
 * Reading back is not trusted either: the host loads the stored bytes again with
 * `expectedDigest`, so an archive changed in the store fails `IMAGE_DIGEST_MISMATCH`.
 *
 * Which platform clients uploaded an image (`createImageClients`): one row per (digest, sha256 of
 * the client name). A client runs by digest only the images it uploaded (host/api/routes.ts); the
 * others' are `NOT_FOUND`, as if never uploaded.
 */
import { createHash } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { ContainedError } from '../../runtime/errors.js';
import { loadImage, type LoadedImage, type LoadImageOptions } from '../../sandbox-images/load.js';
import type { Store } from '../store/store.js';

const DIGEST = /^sha256:([0-9a-f]{64})$/;

/** What images need of the host's store. */
export type ImageRecords = Pick<Store, 'putImage' | 'getImage' | 'addImageClient' | 'hasImageClient'>;

export interface ImageStore {
  /** Store the archive under its digest. */
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

export function createImageStore(records: ImageRecords, dataDir: string, now: () => number = Date.now): ImageStore {
  const legacyDir = path.join(dataDir, 'images');
  const cache = new Map<string, LoadedImage>();
  const remember = (image: LoadedImage): LoadedImage => {
    cache.delete(image.digest);
    cache.set(image.digest, image);
    if (cache.size > IMAGE_CACHE_ENTRIES) cache.delete(cache.keys().next().value as string);
    return image;
  };
  const store: ImageStore = {
    async put(digest, bytes) {
      fileNameFor(digest);
      await records.putImage(digest, bytes, now());
    },
    async get(digest) {
      const file = path.join(legacyDir, fileNameFor(digest));
      const stored = await records.getImage(digest);
      if (stored !== undefined) return stored;
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

export function createImageClients(records: ImageRecords, dataDir: string): ImageClients {
  const legacyRoot = path.join(dataDir, 'images', 'clients');
  const clientHash = (client: string): string => createHash('sha256').update(client, 'utf8').digest('hex');
  return {
    async add(digest, client) {
      fileNameFor(digest);
      await records.addImageClient(digest, clientHash(client));
    },
    async has(digest, client) {
      const hash = clientHash(client);
      if (await records.hasImageClient(digest, hash)) return true;
      // Uploaded before images moved into the store: the marker file.
      try {
        await access(path.join(legacyRoot, fileNameFor(digest).slice(0, -'.tgz'.length), hash));
        return true;
      } catch {
        return false;
      }
    },
  };
}
