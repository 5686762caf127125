/**
 * `contained audit verify|dangling|tail|query|export`: read the host's audit log from its SQLite
 * file (read-only; safe while the host runs), or — when the store is PostgreSQL (the config's
 * `store`, CONTAINED_STORE) — the fleet's one chain in that database, live and page by page. The
 * data folder comes from `--data-dir`, else the host config (`--config` or ./contained.config.json),
 * else ./.contained.
 *
 * verify checks checkpoints with every `--public-key FILE` given (repeat it, one per host), else
 * with this host's key plus the config's `audit.keyFile` and `audit.publicKeyFiles`.
 *
 * Exit codes: verify 0 when the chain and every checkpoint verify, 1 (AUDIT_TAMPERED, first bad
 * record named) when not; the others 0; 2 for usage errors. Records print one per line, or as JSON
 * lines with --json (export always prints JSON lines).
 */
import { createWriteStream } from 'node:fs';
import { ContainedError } from '../../runtime/errors.js';
import { loadVerifyKeys } from '../audit/keys.js';
import type { AuditFilter } from '../audit/query.js';
import type { AuditRecord } from '../audit/record.js';
import { type AuditSource, openAuditSource } from '../audit/source.js';
import { verifyAuditSource } from '../audit/verify.js';
import { requestRecords, showCall, showRequest, verifySignedApprovals } from '../audit/signatures.js';
import { locateState } from '../store/location.js';
import { type CliIo, intFlag, parseFlags, stringFlag } from './args.js';

export const AUDIT_USAGE = `Usage:
  contained audit verify   [--public-key FILE] [--json]
  contained audit dangling [--json]
  contained audit tail     [-n N] [--follow] [FILTERS] [--json]
  contained audit query    [FILTERS] [--limit N] [--json]
  contained audit export   [FILTERS] [--out FILE]
  contained audit show     REQUEST|CALL [--json]
  (all: [--data-dir DIR] [--config FILE])

FILTERS: --run ID  --subject SUBJECT  --capability NAME[.METHOD]  --type TYPE
         --since TIME  --until TIME   (TIME: ISO-8601 with a zone, epoch ms, or 30m / 2h / 7d ago)

verify walks the whole hash chain and every signed checkpoint and names the first bad record
(edited, deleted, inserted, reordered, rewritten). --public-key pins the host key (default: the
data folder's audit-key.pub.pem, plus the config's audit.keyFile and audit.publicKeyFiles); give
it once per host when several hosts share a PostgreSQL store. dangling lists intents that have no outcome: actions the host
was performing when it stopped (their result is unknown). verify also checks every passkey-signed
approval with the public keys the log recorded when they were registered (offline: the log is enough).
show prints a request's approvals (who approved which arguments, with which passkey, whether the
signature verifies) and who decided it; for a call id, whether people or an automatic rule (a grant)
allowed it.
`;

const COMMON = { 'data-dir': { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;
const FILTERS = { run: { type: 'string' }, subject: { type: 'string' }, capability: { type: 'string' }, type: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' } } as const;

export interface AuditCommandOptions {
  /** Stops `tail --follow` (default: SIGINT). */
  signal?: AbortSignal;
  /** `--follow` polling interval, ms (default 500). */
  pollMs?: number;
  now?: () => number;
}

export async function auditCommand(argv: string[], io: CliIo, options: AuditCommandOptions = {}): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout(AUDIT_USAGE);
    return sub === undefined ? 2 : 0;
  }
  const specs = {
    verify: { ...COMMON, 'public-key': { type: 'string', multiple: true } },
    dangling: COMMON,
    tail: { ...COMMON, ...FILTERS, n: { type: 'string', short: 'n' }, follow: { type: 'boolean', short: 'f' } },
    query: { ...COMMON, ...FILTERS, limit: { type: 'string' } },
    export: { ...COMMON, ...FILTERS, out: { type: 'string' } },
    show: COMMON,
  } as const;
  if (!Object.prototype.hasOwnProperty.call(specs, sub)) throw new ContainedError('USAGE', `unknown audit command "${sub}" (verify, dangling, tail, query, export, show)\n\n${AUDIT_USAGE}`);
  const { values, positionals } = parseFlags(rest, specs[sub as keyof typeof specs]);
  if (values.help) {
    io.stdout(AUDIT_USAGE);
    return 0;
  }
  if (sub === 'show' ? positionals.length !== 1 : positionals.length > 0) {
    throw new ContainedError('USAGE', sub === 'show' ? 'audit show takes one request or call id' : `audit ${sub} takes no arguments (got ${JSON.stringify(positionals[0])})`);
  }
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const db = await openAuditSource(location);
  try {
    const now = options.now ?? Date.now;
    const json = values.json === true;
    switch (sub) {
      case 'verify': {
        const given = Array.isArray(values['public-key']) ? values['public-key'] : [];
        const chain = await verify(db, loadVerifyKeys(location.dataDir, given, location.config?.audit), json, io);
        return (await verifySignatures(db, json, io)) ? chain : 1;
      }
      case 'show':
        return await show(db, positionals[0] as string, json, io);
      case 'dangling': {
        const dangling = await db.dangling();
        if (json) io.stdout(`${JSON.stringify(dangling)}\n`);
        else if (dangling.length === 0) io.stdout('no dangling intents: every intent has its outcome\n');
        else {
          io.stdout(`${dangling.length} intent${dangling.length > 1 ? 's' : ''} without an outcome:\n`);
          for (const d of dangling) io.stdout(`${d.state.padEnd(11)} ${formatRecord(d.record)}\n`);
        }
        return 0;
      }
      case 'tail':
        return await tail(db, filterOf(values, now()), countFlag(values.n), values.follow === true, json, io, options);
      case 'query': {
        for (const record of await db.query({ ...filterOf(values, now()), ...limitOf(values) })) io.stdout(json ? `${JSON.stringify(record)}\n` : `${formatRecord(record)}\n`);
        return 0;
      }
      default: {
        const out = stringFlag(values, 'out');
        const stream = out === undefined ? undefined : createWriteStream(out, { mode: 0o600 });
        for await (const record of db.iterate(filterOf(values, now()))) {
          const line = `${JSON.stringify(record)}\n`;
          if (stream) {
            if (!stream.write(line)) await new Promise<void>((resolve) => stream.once('drain', () => resolve()));
          } else io.stdout(line);
        }
        if (stream) await new Promise<void>((resolve, reject) => stream.end((error?: Error | null) => (error ? reject(error) : resolve())));
        return 0;
      }
    }
  } finally {
    await db.close();
  }
}

async function verify(db: AuditSource, keys: ReturnType<typeof loadVerifyKeys>, json: boolean, io: CliIo): Promise<number> {
  const report = await verifyAuditSource(db, keys);
  if (json) {
    io.stdout(`${JSON.stringify(report)}\n`);
  } else {
    const signed = report.lastCheckpointSeq === undefined
      ? 'no signed checkpoint yet'
      : `${report.checkpoints} signed checkpoint${report.checkpoints === 1 ? '' : 's'} (last at seq ${report.lastCheckpointSeq}, ${report.unsignedTail} record${report.unsignedTail === 1 ? '' : 's'} after it not yet signed)`;
    io.stdout(`audit log: ${report.records} records (head seq ${report.headSeq}, ${report.headHash.slice(0, 16)}…), ${signed}\n`);
    if (report.keyIds.length === 1) io.stdout(`host key ${report.keyId}\n`);
    else if (report.keyIds.length > 1) io.stdout(`host keys ${report.keyIds.join(', ')}\n`);
    for (const w of report.warnings) io.stderr(`warning: ${w}\n`);
    if (report.ok) io.stdout(`OK: the chain and every checkpoint verify (${report.elapsedMs} ms)\n`);
  }
  if (report.ok) return 0;
  for (const p of report.problems.slice(1, 5)) io.stderr(`also: seq ${p.seq} (${p.kind}): ${p.message}\n`);
  const first = report.firstBad;
  io.stderr(`AUDIT_TAMPERED: first bad record: seq ${first?.seq} (${first?.kind}): ${first?.message}\n`);
  return 1;
}

/** The signed approvals in the log, each verified with the logged public key (host/audit/signatures.ts). */
async function verifySignatures(db: AuditSource, json: boolean, io: CliIo): Promise<boolean> {
  const report = await verifySignedApprovals(db);
  if (json) io.stdout(`${JSON.stringify({ signatures: { ok: report.ok, verified: report.verified, unsigned: report.unsigned, passkeys: report.passkeys, problems: report.problems } })}\n`);
  else if (report.ok) io.stdout(`OK: signed approvals: ${report.verified} verify with the registered public keys (${report.passkeys} passkey${report.passkeys === 1 ? '' : 's'} registered, ${report.unsigned} approval${report.unsigned === 1 ? '' : 's'} unsigned)\n`);
  for (const p of report.problems) io.stderr(`AUDIT_TAMPERED: signed approval at seq ${p.seq} (request ${p.requestId}${p.operator ? `, ${p.operator}` : ''}): ${p.message}\n`);
  return report.ok;
}

async function show(db: AuditSource, id: string, json: boolean, io: CliIo): Promise<number> {
  if (json) {
    const records = await requestRecords(db, id);
    const report = await verifySignedApprovals(db, id);
    io.stdout(`${JSON.stringify({ records, approvals: report.approvals, problems: report.problems })}\n`);
    return records.length === 0 ? 1 : 0;
  }
  const lines = await showRequest(db, id);
  if (lines.length > 0) {
    io.stdout(`${lines.join('\n')}\n`);
    return 0;
  }
  // Not a request: a call, allowed by a grant (an automatic rule) or by people through a request.
  const call = await showCall(db, id);
  if (call.length === 0) throw new ContainedError('NOT_FOUND', `no request or call ${id} in the audit log`);
  io.stdout(`${call.join('\n')}\n`);
  return 0;
}

async function tail(db: AuditSource, filter: AuditFilter, n: number, follow: boolean, json: boolean, io: CliIo, options: AuditCommandOptions): Promise<number> {
  const print = (r: AuditRecord): void => io.stdout(json ? `${JSON.stringify(r)}\n` : `${formatRecord(r)}\n`);
  const first = await db.tail(n, filter);
  first.forEach(print);
  if (!follow) return 0;
  let last = first[first.length - 1]?.seq ?? (await db.head())?.seq ?? 0;
  const signal = options.signal ?? sigint();
  while (!signal.aborted) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, options.pollMs ?? 500);
      signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
    });
    for (const r of await db.query({ ...filter, afterSeq: last, limit: 10_000 })) {
      print(r);
      last = r.seq;
    }
  }
  return 0;
}

function sigint(): AbortSignal {
  const controller = new AbortController();
  process.once('SIGINT', () => controller.abort());
  return controller.signal;
}

/** One line: seq, time, type, where, and the data (cut at 200 characters). */
export function formatRecord(r: AuditRecord): string {
  const where = [r.runId ? `run=${r.runId.slice(0, 8)}` : '', r.subject ? `subject=${r.subject.startsWith('sha256:') ? `${r.subject.slice(0, 15)}…` : r.subject}` : '', r.capability ? `${r.capability}${r.method ? `.${r.method}` : ''}` : '']
    .filter(Boolean)
    .join(' ');
  const data = JSON.stringify(r.data);
  return `#${r.seq} ${new Date(r.at).toISOString()} ${r.type.padEnd(17)} ${where}${where ? ' ' : ''}${data.length > 200 ? `${data.slice(0, 199)}…` : data}`;
}

function filterOf(values: Record<string, unknown>, now: number): AuditFilter {
  const f: AuditFilter = {};
  const s = (name: string): string | undefined => (typeof values[name] === 'string' ? (values[name] as string) : undefined);
  if (s('run') !== undefined) f.runId = s('run') as string;
  if (s('subject') !== undefined) f.subject = s('subject') as string;
  if (s('capability') !== undefined) f.capability = s('capability') as string;
  if (s('type') !== undefined) f.type = s('type') as string;
  if (s('since') !== undefined) f.since = parseTime(s('since') as string, now, 'since');
  if (s('until') !== undefined) f.until = parseTime(s('until') as string, now, 'until');
  return f;
}

/** `-n N`: records to show first (0 allowed: only new ones with --follow); default 20. */
function countFlag(raw: unknown): number {
  if (raw === undefined) return 20;
  if (typeof raw !== 'string' || !/^\d{1,9}$/.test(raw)) throw new ContainedError('USAGE', `-n takes a whole number (got ${JSON.stringify(raw)})`);
  return Number(raw);
}

function limitOf(values: Record<string, string | boolean | string[] | undefined>): { limit?: number } {
  const limit = intFlag(values, 'limit');
  return limit === undefined ? {} : { limit };
}

const UNITS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** ISO-8601 with a zone, epoch ms, or `<n>s|m|h|d|w` (optionally `-<n>…`) before now. */
export function parseTime(text: string, now: number, flag: string): number {
  const rel = /^-?(\d{1,9})([smhdw])$/.exec(text);
  if (rel?.[1] !== undefined && rel[2] !== undefined) return now - Number(rel[1]) * (UNITS[rel[2]] ?? 0);
  if (/^\d{10,16}$/.test(text)) return Number(text);
  if (/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/.test(text) && !Number.isNaN(Date.parse(text))) return Date.parse(text);
  throw new ContainedError('USAGE', `--${flag} "${text.slice(0, 60)}": expected an ISO-8601 date-time with a zone, epoch ms, or <n>s|m|h|d|w (that long ago)`);
}
