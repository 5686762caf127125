/**
 * Admits or refuses each entry `tar`'s Parser emits, and keeps the admitted files in memory.
 * Checks, in order: path (absolute, `..`, characters, length, depth), type (links, devices, FIFOs,
 * unknown types), count, duplicates and collisions, file type policy, declared size, declared
 * total; then, as the body streams, the streamed size and UTF-8 content.
 *
 * How it fails: never throws from an event handler (a throw inside a stream callback could escape
 * as an uncaught exception); it records the first failure, which the reader rethrows after each
 * write to the parser.
 */
import { isUtf8 } from 'node:buffer';
import type { Parser, ReadEntry } from 'tar';
import { ContainedError } from '../runtime/errors.js';
import type { ImageLimits } from './limits.js';
import { PathIndex, checkDirectoryType, checkFileType, describePath, normaliseEntryPath } from './paths.js';
import type { Verdict } from './paths.js';

/** Pax/GNU extended headers larger than this are refused (they only carry a path and a few fields). */
export const MAX_META_ENTRY_BYTES = 64 * 1024;

export const corrupt = (message: string, cause?: unknown): ContainedError =>
  new ContainedError('IMAGE_CORRUPT', message, cause === undefined ? {} : { cause });

/** Admits or refuses each entry the parser emits; keeps the files; remembers the first failure. */
export class EntryCollector {
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

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  fail(error: ContainedError): void {
    this.#failure ??= error;
  }

  attach(parser: Parser): void {
    parser.on('entry', (entry: ReadEntry) => {
      try {
        this.#onEntry(entry);
      } catch (error) {
        this.fail(error instanceof ContainedError ? error : corrupt('the archive has an unreadable entry', error));
        entry.resume();
      }
    });
    parser.on('ignoredEntry', (entry: ReadEntry) => {
      this.fail(
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
      this.fail(
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
      this.fail(new ContainedError(verdict.code, verdict.message));
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
        this.fail(new ContainedError('IMAGE_FILE_TOO_LARGE', `file ${describePath(p)} is larger than ${this.#limits.maxFileBytes} bytes`));
      } else if (this.#failure === undefined) {
        chunks.push(chunk);
      }
    });
    entry.on('end', () => {
      if (this.#failure !== undefined) return;
      const data = Buffer.concat(chunks, received);
      if (received !== entry.size) {
        this.fail(corrupt(`file ${describePath(p)} is truncated (${received} of ${entry.size} bytes)`));
      } else if (!isUtf8(data)) {
        this.fail(new ContainedError('IMAGE_FILE_TYPE', `file ${describePath(p)} is not UTF-8 text`));
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
