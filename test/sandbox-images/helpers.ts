/**
 * Test helpers for sandbox images: temp folders, and a raw tar writer independent of the one under
 * test, able to write what no well-behaved tool writes (links, devices, absolute paths, bad
 * checksums, pax and GNU long-name headers, duplicate entries, no end marker).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { expect } from 'vitest';
import { ContainedError } from '../../runtime/errors.js';
import type { ErrorCode } from '../../runtime/errors.js';

const made: string[] = [];

/** A fresh temp folder, removed by `cleanupTempDirs`. */
export function tempDir(prefix = 'images-test-'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function cleanupTempDirs(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export interface RawEntry {
  path: string;
  body?: Buffer | string;
  /** Type flag character: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' FIFO, 'x' pax, 'L' GNU long name… */
  type?: string;
  /** Size written in the header (default: body length). */
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  uname?: string;
  gname?: string;
  linkpath?: string;
  /** Write a wrong checksum. */
  badChecksum?: boolean;
}

function field(block: Buffer, offset: number, width: number, value: string): void {
  const bytes = Buffer.from(value, 'utf8');
  bytes.copy(block, offset, 0, Math.min(bytes.length, width));
}

function octal(block: Buffer, offset: number, width: number, value: number): void {
  field(block, offset, width, `${value.toString(8).padStart(width - 1, '0')}\0`);
}

/** One 512-byte header; the path goes into `name` whole (up to 100 bytes, more is cut). */
export function rawHeader(e: RawEntry): Buffer {
  const body = typeof e.body === 'string' ? Buffer.from(e.body, 'utf8') : (e.body ?? Buffer.alloc(0));
  const block = Buffer.alloc(512);
  field(block, 0, 100, e.path);
  octal(block, 100, 8, e.mode ?? 0o644);
  octal(block, 108, 8, e.uid ?? 0);
  octal(block, 116, 8, e.gid ?? 0);
  octal(block, 124, 12, e.size ?? body.length);
  octal(block, 136, 12, e.mtime ?? 0);
  field(block, 148, 8, '        ');
  field(block, 156, 1, e.type ?? '0');
  field(block, 157, 100, e.linkpath ?? '');
  field(block, 257, 8, 'ustar\u000000');
  field(block, 265, 32, e.uname ?? '');
  field(block, 297, 32, e.gname ?? '');
  let sum = 0;
  for (const byte of block) sum += byte;
  if (e.badChecksum) sum += 1;
  field(block, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  return block;
}

/** Header, body, padding to 512. */
export function rawEntry(e: RawEntry): Buffer {
  const body = typeof e.body === 'string' ? Buffer.from(e.body, 'utf8') : (e.body ?? Buffer.alloc(0));
  const pad = (512 - (body.length % 512)) % 512;
  return Buffer.concat([rawHeader(e), body, Buffer.alloc(pad)]);
}

/** A pax extended header ('x') setting `key=value` records for the next entry. */
export function paxEntry(records: Record<string, string>): Buffer {
  const body = Object.entries(records)
    .map(([k, v]) => {
      const rest = ` ${k}=${v}\n`;
      let len = Buffer.byteLength(rest) + 1;
      while (String(len).length + Buffer.byteLength(rest) !== len) len += 1;
      return `${len}${rest}`;
    })
    .join('');
  return rawEntry({ path: 'PaxHeader/x', type: 'x', body });
}

export function rawTar(entries: readonly (RawEntry | Buffer)[], options: { eof?: boolean } = {}): Buffer {
  const parts = entries.map((e) => (Buffer.isBuffer(e) ? e : rawEntry(e)));
  if (options.eof !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export const gz = (data: Buffer): Buffer => gzipSync(data);

export function manifestJson(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    format: 1,
    name: 'test-agent',
    version: '1.0.0',
    description: 'A test agent.',
    entry: 'agent/main.js',
    requests: [{ capability: 'files', kind: 'fs', scope: { readOnly: true }, methods: ['read'], why: 'Read inputs.' }],
    ...overrides,
  });
}

export const MAIN_JS = 'export default async function main(input) {\n  return input;\n}\n';

/** The entries of a minimal valid image. */
export function baseEntries(): RawEntry[] {
  return [
    { path: 'manifest.json', body: manifestJson() },
    { path: 'agent/main.js', body: MAIN_JS },
  ];
}

/** A valid image's files as a map. */
export function baseFiles(): Map<string, Buffer> {
  return new Map(baseEntries().map((e) => [e.path, Buffer.from(e.body as string)]));
}

/** Assert the promise rejects with a ContainedError of exactly this code; returns it. */
export async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<ContainedError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, `expected ${code}, got success`).toBeDefined();
  expect(caught).toBeInstanceOf(ContainedError);
  expect((caught as ContainedError).code, (caught as Error).message).toBe(code);
  return caught as ContainedError;
}

export interface ChildJob {
  file: string;
  options?: Record<string, unknown>;
}

export interface ChildReport {
  baselineRssBytes: number;
  maxRssBytes: number;
  results: { file: string; code: string; ms: number; constructor: string }[];
}

/** Run `load-child.ts` in a fresh Node process (tsx loader, no tsx cache) and parse its report. */
export async function runLoadChild(jobs: ChildJob[], options: { cwd: string; env?: Record<string, string> }): Promise<ChildReport> {
  const { execFile } = await import('node:child_process');
  const { createRequire } = await import('node:module');
  const { pathToFileURL, fileURLToPath } = await import('node:url');
  const { writeFileSync } = await import('node:fs');
  const jobsFile = path.join(tempDir('images-jobs-'), 'jobs.json');
  writeFileSync(jobsFile, JSON.stringify(jobs));
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
  const script = fileURLToPath(new URL('./load-child.ts', import.meta.url));
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['--no-node-snapshot', '--import', tsx, script, jobsFile],
      { cwd: options.cwd, env: { ...process.env, TSX_DISABLE_CACHE: '1', ...options.env }, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
    );
  });
  return JSON.parse(stdout.trim().split('\n').pop() as string) as ChildReport;
}
