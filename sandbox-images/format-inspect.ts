/**
 * Human-readable rendering of a loaded image for `contained image inspect`: the manifest, the
 * capability requests, limits, digest, signers and the file list, as aligned plain-text tables.
 * Pure functions over data already validated by the loader; text from the image is shown with
 * control characters escaped so an image cannot forge terminal output.
 */
import type { LoadedImage } from './load.js';

/** Escape control characters (ANSI escapes, carriage returns…) in image-provided text. */
export function safeText(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/gu, (c) => (c === '\n' ? ' ' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/** A plain-text table: header row, then rows, columns padded to their widest cell. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[], indent = '  '): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    indent + cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MiB`;
}

/** The whole `inspect` report. */
export function formatInspect(image: LoadedImage): string {
  const m = image.manifest;
  const out: string[] = [];
  out.push(`Image        ${safeText(m.name)} ${safeText(m.version)}`);
  if (m.description !== '') out.push(`Description  ${safeText(m.description)}`);
  out.push(`Digest       ${image.digest}`);
  out.push(`Entry        ${safeText(m.entry)}`);
  if (image.signatures.length === 0) {
    out.push('Signed by    (not signed)');
  } else {
    for (const [i, s] of image.signatures.entries()) {
      const trust = s.trusted ? 'trusted' : 'signature valid; not checked against a trust store';
      out.push(`${i === 0 ? 'Signed by   ' : '            '} ed25519 ${s.keyId} (${trust})`);
    }
  }
  const limits = Object.entries(m.limits ?? {}).map(([k, v]) => `${k}=${String(v)}`);
  out.push(`Limits       ${limits.length === 0 ? '(runtime defaults)' : limits.join(' ')}`);
  if (m.input !== undefined) out.push(`Input        JSON schema (${Object.keys(m.input).map(safeText).join(', ')})`);
  out.push('', `Requests (${m.requests.length})`);
  if (m.requests.length === 0) {
    out.push('  (none: the agent asks for no capability)');
  } else {
    const rows = m.requests.map((r) => [r.capability, r.kind, r.methods.join(', '), safeText(JSON.stringify(r.scope)), safeText(r.why)]);
    out.push(renderTable(['CAPABILITY', 'KIND', 'METHODS', 'SCOPE', 'WHY'], rows));
  }
  const total = image.entries.reduce((sum, e) => sum + e.size, 0);
  out.push('', `Files (${image.entries.length}, ${formatSize(total)})`);
  const rows = image.entries.map((e) => [safeText(e.path), String(e.size), e.sha256.slice(0, 16)]);
  out.push(renderTable(['PATH', 'BYTES', 'SHA256'], rows));
  return `${out.join('\n')}\n`;
}

/** The `inspect --json` object. */
export function inspectJson(image: LoadedImage): Record<string, unknown> {
  return {
    digest: image.digest,
    manifest: image.manifest,
    signatures: image.signatures.map((s) => ({ algorithm: 'ed25519', keyId: s.keyId, trusted: s.trusted })),
    signer: image.signer === undefined ? null : { keyId: image.signer.keyId, trusted: image.signer.trusted },
    files: image.entries,
  };
}
