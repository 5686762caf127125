/**
 * `contained image …`: build, inspect, verify, sign images and make signing keys. The dispatcher
 * (host/cli) passes the arguments after `image`.
 *
 * Exit codes: 0 ok; 1 the image (or a key file) failed to build, load or verify — one line
 * `CODE: message` on stderr; 2 usage error (`USAGE: message` and the usage text).
 * Never throws: every failure becomes an exit code.
 */
import type { KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ContainedError } from '../runtime/errors.js';
import { writeFileAtomic, writeImage } from './build.js';
import { DIGEST_PATTERN } from './digest.js';
import { formatSize, formatInspect, inspectJson } from './format-inspect.js';
import { loadImage } from './load.js';
import { describePath } from './paths.js';
import { signImage } from './sign.js';
import { generateSigningKeys, parsePublicKey } from './signature.js';

export interface ImageCommandIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

export const IMAGE_USAGE = `Usage:
  contained image build <dir> -o <out.tgz>          build a reproducible image from a folder
  contained image inspect <image.tgz> [--json]      manifest, requests, digest, signers, files
  contained image verify <image.tgz> [--pub <key.pem>]... [--digest sha256:<hex>] [--require-signature]
                                                    check the image; with --pub, require a
                                                    signature by one of these keys
  contained image sign <image.tgz> --key <private.pem> [-o <out.tgz>]
                                                    add an ed25519 signature (in place without -o)
  contained image keygen --out <prefix>             write <prefix>.key.pem (private, 0600) and
                                                    <prefix>.pub.pem
`;

type Values = Record<string, string | boolean | string[] | undefined>;
type Options = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }>;

const usage = (message: string): ContainedError => new ContainedError('USAGE', message);

function parse(argv: string[], options: Options, positionals: number): { values: Values; args: string[] } {
  let parsed: { values: Values; positionals: string[] };
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (error) {
    throw usage((error as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
  if (parsed.positionals.length !== positionals) {
    throw usage(`expected ${positionals} argument${positionals === 1 ? '' : 's'}, got ${parsed.positionals.length}`);
  }
  return { values: parsed.values, args: parsed.positionals };
}

const str = (values: Values, name: string): string | undefined => {
  const v = values[name];
  return typeof v === 'string' ? v : undefined;
};

async function readKeyFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    throw new ContainedError(code === 'ENOENT' ? 'NOT_FOUND' : 'INVALID_ARGUMENT', `cannot read key file ${describePath(file)} (${code ?? 'error'})`, { cause });
  }
}

async function readPublicKeyFile(file: string): Promise<KeyObject> {
  const pem = await readKeyFile(file);
  try {
    return parsePublicKey(pem);
  } catch (cause) {
    throw new ContainedError('INVALID_ARGUMENT', `${describePath(file)} is not an ed25519 public key (PEM): ${(cause as Error).message}`, { cause });
  }
}

async function build(argv: string[], io: ImageCommandIo): Promise<number> {
  const { values, args } = parse(argv, { out: { type: 'string', short: 'o' } }, 1);
  const out = str(values, 'out');
  if (out === undefined) throw usage('build needs -o <out.tgz>');
  const { digest, bytes } = await writeImage(args[0] as string, out);
  io.stdout(`built ${out}\n  digest  ${digest}\n  size    ${formatSize(bytes)} (${bytes} bytes)\n`);
  return 0;
}

async function inspect(argv: string[], io: ImageCommandIo): Promise<number> {
  const { values, args } = parse(argv, { json: { type: 'boolean' } }, 1);
  const image = await loadImage(args[0] as string);
  io.stdout(values.json === true ? `${JSON.stringify(inspectJson(image), null, 2)}\n` : formatInspect(image));
  return 0;
}

async function verify(argv: string[], io: ImageCommandIo): Promise<number> {
  const { values, args } = parse(
    argv,
    { pub: { type: 'string', multiple: true }, digest: { type: 'string' }, 'require-signature': { type: 'boolean' } },
    1,
  );
  const digest = str(values, 'digest');
  if (digest !== undefined && !DIGEST_PATTERN.test(digest)) throw usage('--digest takes sha256:<64 lower-case hex digits>');
  const pubFiles = Array.isArray(values.pub) ? values.pub : [];
  const trustedKeys = pubFiles.length === 0 ? undefined : await Promise.all(pubFiles.map(readPublicKeyFile));
  const image = await loadImage(args[0] as string, {
    ...(digest === undefined ? {} : { expectedDigest: digest }),
    ...(trustedKeys === undefined ? {} : { trustedKeys }),
    requireSignature: values['require-signature'] === true,
  });
  const signer =
    image.signer === undefined
      ? 'not signed'
      : `signed by ${image.signer.keyId}${image.signer.trusted ? ' (trusted)' : ' (signature valid; no trust store given, use --pub)'}`;
  io.stdout(`OK ${image.manifest.name} ${image.manifest.version}\n  digest  ${image.digest}\n  ${signer}\n`);
  return 0;
}

async function sign(argv: string[], io: ImageCommandIo): Promise<number> {
  const { values, args } = parse(argv, { key: { type: 'string' }, out: { type: 'string', short: 'o' } }, 1);
  const keyFile = str(values, 'key');
  if (keyFile === undefined) throw usage('sign needs --key <private.pem>');
  const input = args[0] as string;
  const out = str(values, 'out') ?? input;
  const signed = await signImage(input, await readKeyFile(keyFile));
  await writeFileAtomic(out, signed.archive);
  io.stdout(`signed ${out}\n  digest  ${signed.digest}\n  key     ${signed.keyId}\n`);
  return 0;
}

async function keygen(argv: string[], io: ImageCommandIo): Promise<number> {
  const { values } = parse(argv, { out: { type: 'string' } }, 0);
  const prefix = str(values, 'out');
  if (prefix === undefined || prefix === '') throw usage('keygen needs --out <prefix>');
  const keys = generateSigningKeys();
  const privateFile = `${prefix}.key.pem`;
  const publicFile = `${prefix}.pub.pem`;
  try {
    // 'wx': never overwrite an existing key.
    await writeFile(privateFile, keys.privateKeyPem, { flag: 'wx', mode: 0o600 });
    await writeFile(publicFile, keys.publicKeyPem, { flag: 'wx', mode: 0o644 });
  } catch (cause) {
    throw new ContainedError('INVALID_ARGUMENT', `cannot write the key files: ${(cause as Error).message}`, { cause });
  }
  io.stdout(`private key  ${path.normalize(privateFile)} (keep it secret)\npublic key   ${path.normalize(publicFile)}\nkey id       ${keys.keyId}\n`);
  return 0;
}

const SUBCOMMANDS: Record<string, (argv: string[], io: ImageCommandIo) => Promise<number>> = { build, inspect, verify, sign, keygen };

/** Run `contained image <argv…>`; returns the exit code. */
export async function imageCommand(argv: string[], io: ImageCommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help' || rest.includes('--help') || rest.includes('-h')) {
    (name === undefined ? io.stderr : io.stdout)(IMAGE_USAGE);
    return name === undefined ? 2 : 0;
  }
  const command = Object.prototype.hasOwnProperty.call(SUBCOMMANDS, name) ? SUBCOMMANDS[name] : undefined;
  try {
    if (command === undefined) throw usage(`unknown image command ${JSON.stringify(name)}`);
    return await command(rest, io);
  } catch (error) {
    if (error instanceof ContainedError && error.code === 'USAGE') {
      io.stderr(`USAGE: ${error.message}\n\n${IMAGE_USAGE}`);
      return 2;
    }
    if (error instanceof ContainedError) {
      io.stderr(`${error.code}: ${error.message}\n`);
      return 1;
    }
    io.stderr(`INTERNAL: ${(error as Error | undefined)?.message ?? String(error)}\n`);
    return 1;
  }
}
