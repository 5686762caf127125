/**
 * Reads an untrusted `.tgz` into memory, entry by entry, and never touches the disk: there is no
 * extraction step, so tar-slip cannot write anywhere, whatever the paths say.
 *
 * Defends against:
 * - gzip bombs: we gunzip ourselves (node:zlib) and count the decompressed bytes as they stream,
 *   aborting the pipeline as soon as `maxTotalBytes` is passed (one zlib chunk of overshoot at
 *   most); the compressed input is capped by `maxArchiveBytes`. `tar`'s own
 *   `maxDecompressionRatio` is not relied on (a ~900:1 bomb passes it), and tar's own decompression
 *   is never used: a second gzip layer is refused, brotli and zstd are turned off;
 * - oversized entries: declared sizes are checked before the body streams, streamed bytes again;
 * - hostile entries: links, devices, FIFOs, unknown types, absolute or `..` paths, collisions,
 *   duplicates, depth, count (see `paths.ts`); non-UTF-8 file contents;
 * - corrupt or truncated archives: `tar`'s Parser runs in strict mode, so every warning (bad
 *   checksum, truncated entry, not a tar at all) is an error; a missing end-of-archive marker, or
 *   anything but zero padding after it (entries hidden from us), is an error too.
 *
 * How it fails: throws ContainedError with an IMAGE_* code naming the entry, or NOT_FOUND for a
 * missing archive file. Event handlers never throw (a throw inside a stream callback could escape
 * as an uncaught exception); they record the first failure and the pipeline stops on it.
 */
import { constants as fsConstants } from 'node:fs';
import { open } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser } from 'tar';
import { ContainedError } from '../runtime/errors.js';
import { EntryCollector, MAX_META_ENTRY_BYTES, corrupt } from './entry-collector.js';
import type { ImageLimits } from './limits.js';
import { describePath } from './paths.js';

const CHUNK_BYTES = 64 * 1024;

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
  const feeder = new BlockFeeder(parser, state);
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
      feeder.push(chunk);
      state.throwIfFailed();
    }
    feeder.finish();
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

const ZERO_BLOCKS = Buffer.alloc(CHUNK_BYTES);

/**
 * Feeds the tar parser in 512-byte-aligned pieces, and all-zero blocks one at a time, so we know
 * exactly where the end-of-archive marker (two zero blocks) is. After it, tar's parser would
 * buffer and re-copy whatever follows; we stop feeding it and require the rest to be zero padding:
 * data hidden after the marker (which `tar --ignore-zeros` would extract) is refused.
 */
class BlockFeeder {
  #pending = Buffer.alloc(0);
  readonly #parser: Parser;
  readonly #state: EntryCollector;

  constructor(parser: Parser, state: EntryCollector) {
    this.#parser = parser;
    this.#state = state;
  }

  push(chunk: Buffer): void {
    const data = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const aligned = data.length - (data.length % 512);
    this.#pending = Buffer.from(data.subarray(aligned));
    let start = 0;
    for (let at = 0; at < aligned && !this.#state.sawEof; at += 512) {
      if (data[at] !== 0 || !data.subarray(at, at + 512).equals(ZERO_BLOCKS.subarray(0, 512))) continue;
      if (at > start) this.#write(data.subarray(start, at));
      this.#write(data.subarray(at, at + 512));
      start = at + 512;
      if (this.#state.failed) return;
    }
    if (this.#state.sawEof) this.#requireZeros(data.subarray(start));
    else if (aligned > start) this.#write(data.subarray(start, aligned));
  }

  /** At the end of the stream: a partial block left over goes to the parser (which calls it truncated). */
  finish(): void {
    if (this.#pending.length === 0) return;
    if (this.#state.sawEof) this.#requireZeros(this.#pending);
    else this.#write(this.#pending);
    this.#pending = Buffer.alloc(0);
  }

  #requireZeros(data: Buffer): void {
    for (let i = 0; i < data.length; i += CHUNK_BYTES) {
      const part = data.subarray(i, i + CHUNK_BYTES);
      if (!part.equals(ZERO_BLOCKS.subarray(0, part.length))) {
        this.#state.fail(corrupt('the archive has data after its end-of-archive marker'));
        return;
      }
    }
  }

  #write(piece: Buffer): void {
    try {
      this.#parser.write(piece);
    } catch (error) {
      this.#state.fail(corrupt('the archive is not a valid tar stream', error));
    }
  }
}
