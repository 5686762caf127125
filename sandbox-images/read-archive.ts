/**
 * Reads an untrusted `.tgz` into memory, entry by entry, and never touches the disk: there is no
 * extraction step, so tar-slip cannot write anywhere, whatever the paths say.
 *
 * Defends against:
 * - gzip bombs: we gunzip ourselves (node:zlib) and count the decompressed bytes as they stream,
 *   aborting the pipeline as soon as `maxTotalBytes` is passed (one zlib chunk of overshoot at
 *   most); the compressed input is capped by `maxArchiveBytes`. `tar`'s own
 *   `maxDecompressionRatio` is not relied on (a ~900:1 bomb passes it) and cannot be bypassed by a
 *   gzip nested inside the gzip: the decompressed stream must start like a tar header;
 * - oversized entries: declared sizes are checked before the body streams, streamed bytes again;
 * - hostile entries: links, devices, FIFOs, unknown types, absolute or `..` paths, collisions,
 *   duplicates, depth, count (see `paths.ts`); non-UTF-8 file contents;
 * - corrupt or truncated archives: `tar`'s Parser runs in strict mode, so every warning (bad
 *   checksum, truncated entry, not a tar at all) is an error; a missing end-of-archive marker is
 *   an error too.
 *
 * How it fails: throws ContainedError with an IMAGE_* code naming the entry, or NOT_FOUND for a
 * missing archive file. Event handlers never throw (a throw inside a stream callback could escape
 * as an uncaught exception); they record the first failure and the pipeline stops on it.
 */
import { isUtf8 } from 'node:buffer';
import { constants as fsConstants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser } from 'tar';
import type { ReadEntry } from 'tar';
import { ContainedError } from '../runtime/errors.js';
import type { ImageLimits } from './limits.js';
import { PathIndex, checkDirectoryType, checkFileType, describePath, normaliseEntryPath } from './paths.js';
import type { Verdict } from './paths.js';

const CHUNK_BYTES = 64 * 1024;
/** Pax/GNU extended headers larger than this are refused (they only carry a path and a few fields). */
const MAX_META_ENTRY_BYTES = 64 * 1024;

const corrupt = (message: string, cause?: unknown): ContainedError =>
  new ContainedError('IMAGE_CORRUPT', message, cause === undefined ? {} : { cause });

/**
 * The regular files of the archive (canonical path → bytes), signatures entry included. The
 * archive is a Buffer, or the path of a regular file.
 */
export async function readArchive(input: Uint8Array | string, limits: ImageLimits): Promise<Map<string, Buffer>> {
  let handle: FileHandle | undefined;
  try {
    let source: Readable;
    if (typeof input === 'string') {
      handle = await openArchive(input, limits);
      source = handle.createReadStream({ highWaterMark: CHUNK_BYTES, autoClose: false });
    } else {
      if (input.byteLength > limits.maxArchiveBytes) throw archiveTooLarge(input.byteLength, limits);
      source = Readable.from(chunksOf(Buffer.from(input.buffer, input.byteOffset, input.byteLength)));
    }
    return await readStream(source, limits);
  } catch (error) {
    if (error instanceof ContainedError) throw error;
    const message = (error as Error | undefined)?.message ?? String(error);
    const zlibCode = (error as { code?: unknown } | undefined)?.code;
    if (typeof zlibCode === 'string' && zlibCode.startsWith('Z_')) {
      throw corrupt(/unexpected end/i.test(message) ? 'the archive is truncated (gzip stream ends early)' : `the archive is not a valid gzip stream: ${message}`, error);
    }
    throw corrupt(`the archive cannot be read: ${message}`, error);
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

async function openArchive(file: string, limits: ImageLimits): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; we refuse non-regular files below.
    handle = await open(file, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ContainedError('NOT_FOUND', `image file ${describePath(file)} does not exist`, { cause: error });
    throw corrupt(`image file ${describePath(file)} cannot be opened (${code ?? 'error'})`, error);
  }
  const stat = await handle.stat();
  if (!stat.isFile()) {
    await handle.close();
    throw corrupt(`image file ${describePath(file)} is not a regular file`);
  }
  if (stat.size > limits.maxArchiveBytes) {
    await handle.close();
    throw archiveTooLarge(stat.size, limits);
  }
  return handle;
}

function* chunksOf(buffer: Buffer): Generator<Buffer> {
  for (let i = 0; i < buffer.length; i += CHUNK_BYTES) yield buffer.subarray(i, i + CHUNK_BYTES);
}

const archiveTooLarge = (bytes: number, limits: ImageLimits): ContainedError =>
  new ContainedError('IMAGE_TOO_LARGE', `the archive has ${bytes} compressed bytes (limit ${limits.maxArchiveBytes})`);

async function readStream(source: Readable, limits: ImageLimits): Promise<Map<string, Buffer>> {
  const state = new EntryCollector(limits);
  const parser = new Parser({ strict: true, brotli: false, zstd: false, maxMetaEntrySize: MAX_META_ENTRY_BYTES });
  state.attach(parser);

  let compressed = 0;
  let head = Buffer.alloc(0);
  async function* checkCompressed(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of chunks) {
      compressed += chunk.length;
      if (compressed > limits.maxArchiveBytes) throw archiveTooLarge(compressed, limits);
      if (head.length < 2) {
        head = Buffer.concat([head, chunk.subarray(0, 2)]);
        if (head.length >= 2 && (head[0] !== 0x1f || head[1] !== 0x8b)) throw corrupt('the archive is not gzip-compressed');
      }
      yield chunk;
    }
    if (head.length < 2) throw corrupt(compressed === 0 ? 'the archive is empty' : 'the archive is not gzip-compressed');
  }

  let inflated = 0;
  let parserEnded = false;
  parser.on('end', () => {
    parserEnded = true;
  });
  async function consume(chunks: AsyncIterable<Buffer>): Promise<void> {
    for await (const chunk of chunks) {
      // Checked before the parser sees the bytes: the bomb cap does not depend on tar at all.
      if (inflated === 0 && chunk.length >= 2 && chunk[0] === 0x1f && chunk[1] === 0x8b) {
        throw corrupt('the archive is compressed twice (refused: only one gzip layer is counted)');
      }
      inflated += chunk.length;
      if (inflated > limits.maxTotalBytes) {
        throw new ContainedError('IMAGE_TOO_LARGE', `the archive decompresses past ${limits.maxTotalBytes} bytes (stopped early)`);
      }
      // After the end-of-archive marker, tar's parser would buffer (and re-copy) whatever follows;
      // we keep counting it against the cap but stop feeding it.
      if (!state.sawEof) writeSafely(parser, chunk);
      state.throwIfFailed();
    }
    try {
      parser.end();
    } catch (error) {
      throw corrupt('the archive is not a valid tar stream', error);
    }
    state.throwIfFailed();
    if (!state.sawEof || !parserEnded) throw corrupt('the archive is truncated (no end-of-archive marker)');
  }

  await pipeline(source, checkCompressed, createGunzip({ chunkSize: CHUNK_BYTES }), consume);
  return state.files;
}

function writeSafely(parser: Parser, chunk: Buffer): void {
  try {
    parser.write(chunk);
  } catch (error) {
    throw corrupt('the archive is not a valid tar stream', error);
  }
}

/** Admits or refuses each entry the parser emits; keeps the files; remembers the first failure. */
class EntryCollector {
  readonly files = new Map<string, Buffer>();
  sawEof = false;
  #failure: ContainedError | undefined;
  #entries = 0;
  #declaredBytes = 0;
  readonly #index = new PathIndex();
  readonly #limits: ImageLimits;

  constructor(limits: ImageLimits) {
    this.#limits = limits;
  }

  throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  #fail(error: ContainedError): void {
    this.#failure ??= error;
  }

  attach(parser: Parser): void {
    parser.on('entry', (entry: ReadEntry) => {
      try {
        this.#onEntry(entry);
      } catch (error) {
        this.#fail(error instanceof ContainedError ? error : corrupt('the archive has an unreadable entry', error));
        entry.resume();
      }
    });
    parser.on('ignoredEntry', (entry: ReadEntry) => {
      this.#fail(
        entry.meta
          ? corrupt(`an extended header is larger than ${MAX_META_ENTRY_BYTES} bytes`)
          : new ContainedError('IMAGE_SPECIAL_FILE', `entry ${describePath(entry.path)} has an unsupported type (${String(entry.header.type)})`),
      );
    });
    parser.on('eof', () => {
      this.sawEof = true;
    });
    const onProblem = (error: unknown): void => {
      const message = error instanceof Error ? error.message : String(error);
      this.#fail(
        /truncated/i.test(message)
          ? corrupt('the archive is truncated (an entry ends early)', error)
          : corrupt(`the archive is not a valid tar stream: ${message}`, error),
      );
    };
    parser.on('error', onProblem);
    parser.on('warn', (_code: string, message: string) => onProblem(new Error(message)));
  }

  #onEntry(entry: ReadEntry): void {
    if (this.#failure !== undefined) {
      entry.resume();
      return;
    }
    const verdict = this.#admit(entry);
    if (!verdict.ok) {
      this.#fail(new ContainedError(verdict.code, verdict.message));
      entry.resume();
      return;
    }
    const p = verdict.value;
    if (p === null) {
      entry.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let received = 0;
    entry.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > this.#limits.maxFileBytes) {
        this.#fail(new ContainedError('IMAGE_FILE_TOO_LARGE', `file ${describePath(p)} is larger than ${this.#limits.maxFileBytes} bytes`));
      } else if (this.#failure === undefined) {
        chunks.push(chunk);
      }
    });
    entry.on('end', () => {
      if (this.#failure !== undefined) return;
      const data = Buffer.concat(chunks, received);
      if (received !== entry.size) {
        this.#fail(corrupt(`file ${describePath(p)} is truncated (${received} of ${entry.size} bytes)`));
      } else if (!isUtf8(data)) {
        this.#fail(new ContainedError('IMAGE_FILE_TYPE', `file ${describePath(p)} is not UTF-8 text`));
      } else {
        this.files.set(p, data);
      }
    });
  }

  /** The canonical path of a file to keep, `null` for a directory to skip, or a refusal. */
  #admit(entry: ReadEntry): Verdict<string | null> {
    const type = entry.type;
    const isDirectory = type === 'Directory';
    const pathVerdict = normaliseEntryPath(entry.path, isDirectory, this.#limits);
    if (!pathVerdict.ok) return pathVerdict;
    const p = pathVerdict.value;
    const shown = describePath(entry.path);
    if (type === 'SymbolicLink' || type === 'Link') {
      const kind = type === 'Link' ? 'a hard link' : 'a symbolic link';
      return { ok: false, code: 'IMAGE_LINK', message: `entry ${shown} is ${kind} (to ${describePath(entry.linkpath ?? '')})` };
    }
    if (type !== 'File' && type !== 'OldFile' && !isDirectory) {
      return { ok: false, code: 'IMAGE_SPECIAL_FILE', message: `entry ${shown} is not a regular file or directory (${type})` };
    }
    if (p === '') return { ok: true, value: null };
    this.#entries += 1;
    if (this.#entries > this.#limits.maxFiles) {
      return { ok: false, code: 'IMAGE_TOO_MANY_FILES', message: `the archive has more than ${this.#limits.maxFiles} entries (at ${shown})` };
    }
    const added = this.#index.add(p, isDirectory ? 'directory' : 'file');
    if (!added.ok) return added;
    const typeVerdict = isDirectory ? checkDirectoryType(p) : checkFileType(p, entry.mode);
    if (!typeVerdict.ok) return typeVerdict;
    if (isDirectory) return { ok: true, value: null };
    if (entry.size > this.#limits.maxFileBytes) {
      return { ok: false, code: 'IMAGE_FILE_TOO_LARGE', message: `file ${shown} declares ${entry.size} bytes (limit ${this.#limits.maxFileBytes})` };
    }
    this.#declaredBytes += entry.size;
    if (this.#declaredBytes > this.#limits.maxTotalBytes) {
      return { ok: false, code: 'IMAGE_TOO_LARGE', message: `the files declare more than ${this.#limits.maxTotalBytes} bytes in total (at ${shown})` };
    }
    return { ok: true, value: p };
  }
}
