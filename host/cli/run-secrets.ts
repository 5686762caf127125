/**
 * `contained run --secrets FILE`: the credentials an `http` grant attaches on the agent's behalf, read
 * from a JSON file of secret name → value (`{ "crm-token": "Bearer …" }`), never from the command
 * line (argv is visible to every local user).
 *
 * Defends against: a secret leaking through the CLI's own output (no message ever quotes the file's
 * content: a JSON syntax error gives a line and column, a bad entry names its key, never its
 * value); a secrets file other local users can read (refused unless its mode gives others no access;
 * group access is allowed, for a shared service group); an oversized file (capped at
 * `MAX_SECRETS_FILE_BYTES`, counted while reading, so a pipe cannot grow without bound); and a grant
 * that would fail mid-run because its secret is missing or unusable (checked before the program
 * starts, naming the grant, the secret and the flag that supplies it).
 *
 * FILE may be a regular file (or a link to one) or a pipe, so `--secrets <(vault kv get -format=json …)`
 * keeps secrets off the disk. Every mistake is a `USAGE` error (exit 2) naming `--secrets`.
 */
import type { Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import path from 'node:path';
import type { HttpScope } from '../../capabilities/http/index.js';
import type { HostSecrets } from '../../capabilities/plugin.js';
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import { ContainedError } from '../../runtime/errors.js';

/** Largest secrets file read, in bytes (the host config's secrets file has the same cap). */
export const MAX_SECRETS_FILE_BYTES = 1024 * 1024;

export const SECRETS_USAGE = `  --secrets FILE       secrets http grants attach (their "credentials"): a JSON object of secret
                       name → value, e.g. {"crm-token":"Bearer …"}; others must have no access to
                       FILE (chmod 600); a pipe works too: --secrets <(your-vault-command)`;

/** The loaded secrets, plus where they came from (for messages). */
export interface RunSecrets extends HostSecrets {
  /** FILE as the user wrote it. */
  readonly file: string;
  /** The secret names, sorted (names are not secret; values never leave `get`). */
  readonly names: readonly string[];
}

function usage(message: string): ContainedError {
  return new ContainedError('USAGE', message);
}

/** Read and check `--secrets FILE` (relative to `cwd`). */
export async function loadRunSecrets(file: string, cwd: string = process.cwd(), platform: NodeJS.Platform = process.platform): Promise<RunSecrets> {
  if (file.trim() === '') throw usage('--secrets takes a file: a JSON object of secret name → value');
  const text = await readSecretsText(file, path.resolve(cwd, file), platform);
  let raw: unknown;
  try {
    raw = JSON.parse(text) as unknown;
  } catch (error) {
    // V8's message can quote the text around the mistake, i.e. a secret: report the place only.
    const at = /\(line (\d+) column (\d+)\)/.exec((error as Error).message);
    throw usage(`--secrets ${file} is not valid JSON${at ? ` (line ${at[1]}, column ${at[2]})` : ''}; expected an object of secret name → string value`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw usage(`--secrets ${file} must hold a JSON object of secret name → string value`);
  }
  const table = new Map<string, string>();
  for (const [name, value] of Object.entries(raw)) {
    const key = JSON.stringify(name);
    if (name === '') throw usage(`--secrets ${file}: a secret has an empty name`);
    if (typeof value !== 'string') throw usage(`--secrets ${file}: the value of ${key} must be a string (it is ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value})`);
    if (value === '') throw usage(`--secrets ${file}: the value of ${key} is empty`);
    // The http capability sends a value as a header: it would refuse these at call time instead.
    if (/[\0\r\n]/.test(value)) throw usage(`--secrets ${file}: the value of ${key} contains a line break or NUL, which a header cannot carry`);
    table.set(name, value);
  }
  return { file, names: [...table.keys()].sort(), get: (name) => table.get(name) };
}

async function readSecretsText(file: string, absolute: string, platform: NodeJS.Platform): Promise<string> {
  let handle: FileHandle;
  try {
    handle = await open(absolute, 'r');
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw usage(`--secrets: no such file: ${file}`);
    if (code === 'EISDIR') throw usage(`--secrets ${file} is a folder; give a JSON file of secret name → value`);
    throw usage(`--secrets: cannot read ${file} (${typeof code === 'string' ? code : 'error'})`);
  }
  try {
    // Checked on the opened file, so a link or a rename after the check changes nothing.
    const stats = await handle.stat();
    checkKind(file, stats, platform);
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buffer = Buffer.alloc(64 * 1024);
      const bytesRead = await handle.read(buffer, 0, buffer.length, null).then(
        (r) => r.bytesRead,
        (error: unknown) => {
          const code = (error as { code?: unknown }).code;
          throw usage(`--secrets: cannot read ${file} (${typeof code === 'string' ? code : 'error'})`);
        },
      );
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > MAX_SECRETS_FILE_BYTES) throw usage(`--secrets ${file} is larger than ${MAX_SECRETS_FILE_BYTES} bytes`);
      chunks.push(buffer.subarray(0, bytesRead));
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    await handle.close();
  }
}

function checkKind(file: string, stats: Stats, platform: NodeJS.Platform): void {
  if (stats.isDirectory()) throw usage(`--secrets ${file} is a folder; give a JSON file of secret name → value`);
  if (stats.isFIFO()) return; // a pipe (`<(…)`) is private to the processes that hold it
  if (!stats.isFile()) throw usage(`--secrets ${file} is not a regular file or a pipe`);
  // Windows has no POSIX mode bits (Node reports 0o666): there, protect FILE with an ACL.
  if (platform !== 'win32' && (stats.mode & 0o007) !== 0) {
    throw usage(`--secrets ${file} is accessible to other users (mode ${(stats.mode & 0o777).toString(8).padStart(3, '0')}); run chmod 600 ${file}`);
  }
}

/**
 * Every secret an http grant names must be in `--secrets`, checked before the program runs, so a
 * grant never fails mid-run with "not available on the host". Names the grant, the secret and the flag.
 */
export function checkGrantSecrets(instances: readonly CapabilityInstance[], secrets: RunSecrets | undefined): void {
  for (const instance of instances) {
    if (instance.definition.name !== 'http') continue;
    for (const credential of (instance.scope as HttpScope).credentials ?? []) {
      if (secrets?.get(credential.secret) !== undefined) continue;
      const what = `--grant ${instance.name}: its credential for ${credential.origin} names the secret ${JSON.stringify(credential.secret)}`;
      if (secrets === undefined) {
        throw usage(`${what}; give --secrets FILE, a JSON file of secret name → value holding it (others must have no access: chmod 600)`);
      }
      const held = secrets.names.length === 0 ? 'none' : secrets.names.map((n) => JSON.stringify(n)).join(', ');
      throw usage(`${what}, which --secrets ${secrets.file} does not hold (it holds: ${held})`);
    }
  }
}
