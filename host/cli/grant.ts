/**
 * `contained grant add|list|revoke`: the stored grants, edited from a terminal on the host. Whoever
 * can run this against the data folder acts as an admin (they could edit the file anyway); the risk
 * policy (host/grants.ts) still applies, and overriding it takes an explicit `--force-reason` that
 * is recorded in the grant.
 *
 * `grant add` checks methods, risk and scope against the capability instance configured in the
 * host config, so it refuses (USAGE) to run without one. Both `add` and `revoke` write through the
 * grant service (host/grant-service.ts), the only writer of grants, with the same rules as the
 * console. A revocation written here reaches a running host at its next call (the gate reads
 * grants from the store per call).
 *
 * Exit codes: 0 ok; 2 usage or invalid argument; 1 anything else (GRANT_REFUSED, NOT_FOUND…),
 * as `CODE: message` on stderr (printed by the dispatcher).
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { MAX_SCOPE_FILE_BYTES } from '../../capabilities/grant-spec.js';
import { ContainedError } from '../../runtime/errors.js';
import { openCapability } from '../config.js';
import { GrantService } from '../grant-service.js';
import { formatSubject, isMode, type NewGrantInput, parseBudgets, parseExpiry, parseSubject } from '../grants.js';
import type { Grant } from '../model.js';
import { locateState, openForRead, openOnFirstUse, withStore } from '../store/location.js';
import type { GrantFilter } from '../store/store.js';
import { type CliIo, intFlag, listFlag, type Parsed, parseFlags, runSubcommand, stringFlag } from './args.js';

export const GRANT_USAGE = `Usage:
  contained grant add --subject SUBJECT --capability NAME --methods M[,M…]|'*'
                      --mode contained|executed|assisted --reason TEXT
                      [--approvals N] [--scope JSON|@file] [--expires +7d|ISO-DATE]
                      [--budget METHOD=maxCalls:N[,perSecond:N][,maxBytes:N]]…
                      [--request-timeout-ms N] [--review-sample 0..1] [--signed-approvals]
                      [--stage-runs]
                      [--force-reason TEXT] [--by NAME] [--config FILE] [--data-dir DIR] [--json]
  contained grant list [--subject SUBJECT] [--all] [--json] [--config FILE] [--data-dir DIR]
  contained grant revoke ID --reason TEXT [--by NAME] [--config FILE] [--data-dir DIR]

SUBJECT is an image digest (sha256:<64 hex>) or an image name with the key id of its signer
(<name>@sha256:<64 hex>). NAME is a capability configured in the host config (default
./contained.config.json). Destructive or financial methods cannot be granted contained or
executed, and need two approvers when assisted, unless --force-reason records why an admin
overrides it. --signed-approvals: every approval of a request under the grant must carry a
passkey assertion (made in the console), whatever the host's approvals.signed policy.
--stage-runs: every run of SUBJECT is staged (its effects reviewed as one changeset before
anything is applied), even one not submitted with --staged.
`;

const COMMON = {
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  by: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function grantCommand(argv: string[], io: CliIo): Promise<number> {
  return runSubcommand('grant', argv, io, GRANT_USAGE, { add: grantAdd, list: grantList, revoke: grantRevoke });
}

// Helpers shared with token.ts ------------------------------------------------------------

/** Who is acting at this terminal: `--by`, else the login name, else `cli`. */
export function author(values: Parsed['values']): string {
  const by = stringFlag(values, 'by');
  if (by !== undefined) {
    if (by.trim() === '') throw new ContainedError('USAGE', '--by needs a name');
    return by;
  }
  try {
    return os.userInfo().username || 'cli';
  } catch {
    return 'cli';
  }
}

export function requireFlag(values: Parsed['values'], name: string, usage: string): string {
  const value = stringFlag(values, name);
  if (value === undefined || value.trim() === '') throw new ContainedError('USAGE', `--${name} is required\n\n${usage}`);
  return value;
}

export function noPositionals(positionals: string[], usage: string): void {
  if (positionals.length > 0) throw new ContainedError('USAGE', `unexpected argument "${positionals[0]}"\n\n${usage}`);
}

export function isoTime(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** Left-aligned columns two spaces apart; control characters in cells are shown escaped. */
export function table(header: string[], rows: string[][]): string {
  const clean = (cell: string): string => cell.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  const all = [header, ...rows.map((r) => r.map(clean))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return `${all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd()).join('\n')}\n`;
}

// add ---------------------------------------------------------------------------------------

async function readScope(text: string): Promise<Record<string, unknown>> {
  let json = text;
  if (text.startsWith('@')) {
    const file = path.resolve(text.slice(1));
    try {
      json = await readFile(file, 'utf8');
    } catch (cause) {
      throw new ContainedError('USAGE', `--scope: cannot read ${text.slice(1)}`, { cause });
    }
    if (Buffer.byteLength(json) > MAX_SCOPE_FILE_BYTES) throw new ContainedError('INVALID_ARGUMENT', `--scope: ${text.slice(1)} is larger than ${MAX_SCOPE_FILE_BYTES} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(json) as unknown;
  } catch {
    throw new ContainedError('INVALID_ARGUMENT', '--scope: not valid JSON (a JSON object, or @file)');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ContainedError('INVALID_ARGUMENT', '--scope: must be a JSON object');
  return value as Record<string, unknown>;
}

function reviewSample(values: Parsed['values']): number | undefined {
  const raw = stringFlag(values, 'review-sample');
  if (raw === undefined) return undefined;
  const n = /^(0(\.\d+)?|1(\.0+)?|\.\d+)$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= 0 && n <= 1)) throw new ContainedError('USAGE', `--review-sample takes a fraction from 0 to 1 (got ${JSON.stringify(raw)})`);
  return n;
}

async function grantAdd(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    ...COMMON,
    subject: { type: 'string' },
    capability: { type: 'string' },
    methods: { type: 'string' },
    mode: { type: 'string' },
    approvals: { type: 'string' },
    scope: { type: 'string' },
    expires: { type: 'string' },
    budget: { type: 'string', multiple: true },
    'request-timeout-ms': { type: 'string' },
    'review-sample': { type: 'string' },
    reason: { type: 'string' },
    'force-reason': { type: 'string' },
    'signed-approvals': { type: 'boolean' },
    'stage-runs': { type: 'boolean' },
  });
  if (values.help) {
    io.stdout(GRANT_USAGE);
    return 0;
  }
  noPositionals(positionals, GRANT_USAGE);
  const subject = parseSubject(requireFlag(values, 'subject', GRANT_USAGE));
  const capability = requireFlag(values, 'capability', GRANT_USAGE);
  const methods = requireFlag(values, 'methods', GRANT_USAGE)
    .split(',')
    .map((m) => m.trim());
  const mode = requireFlag(values, 'mode', GRANT_USAGE);
  if (!isMode(mode)) throw new ContainedError('USAGE', `--mode is contained, executed or assisted (got ${JSON.stringify(mode)})`);
  const reason = requireFlag(values, 'reason', GRANT_USAGE);
  const by = author(values);
  const now = Date.now();

  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir'), requireConfigFor: 'grant add' });
  if (!location.config) throw new ContainedError('USAGE', 'grant add needs the host config; pass --config FILE');
  // Only its definition and scope are read: what its kind started is closed at once.
  const { instance, close } = await openCapability(location.config, capability);
  await close();

  const input: NewGrantInput = { subject, capability, methods, mode, createdBy: by, reason };
  const approvals = intFlag(values, 'approvals');
  if (approvals !== undefined) input.approvals = approvals;
  const scopeText = stringFlag(values, 'scope');
  if (scopeText !== undefined) input.scope = await readScope(scopeText);
  const expires = stringFlag(values, 'expires');
  if (expires !== undefined) input.expiresAt = parseExpiry(expires, now);
  const budgets = listFlag(values, 'budget');
  if (budgets.length > 0) input.budgets = parseBudgets(budgets);
  const timeout = intFlag(values, 'request-timeout-ms');
  if (timeout !== undefined) input.requestTimeoutMs = timeout;
  const sample = reviewSample(values);
  if (sample !== undefined) input.reviewSample = sample;
  if (values['signed-approvals'] === true) input.signedApprovals = true;
  if (values['stage-runs'] === true) input.stageRuns = true;
  const forceReason = stringFlag(values, 'force-reason');
  if (forceReason !== undefined) input.forced = { by, reason: forceReason };

  // The rules (methods, risk, approvals, scope) refuse before the store is opened.
  const { grant, notes } = await withStore(openOnFirstUse(location), (store) =>
    new GrantService({ store, instances: new Map([[capability, instance]]), now: () => now }).add(input, { role: 'admin' }),
  );
  if (values.json) {
    io.stdout(`${JSON.stringify(grant, null, 2)}\n`);
  } else {
    io.stdout(`${describeGrant(grant)}\n`);
  }
  for (const note of notes) io.stderr(`note: ${note}\n`);
  if (grant.forced) io.stderr(`warning: risk policy overridden by ${grant.forced.by}: ${grant.forced.reason}\n`);
  return 0;
}

function describeGrant(grant: Grant): string {
  const lines = [
    `granted ${grant.id}`,
    `  subject     ${formatSubject(grant.subject)}`,
    `  capability  ${grant.capability}${grant.scope ? ` scope ${JSON.stringify(grant.scope)}` : ''}`,
    `  methods     ${grant.methods.join(', ')}`,
    `  mode        ${grant.mode}${grant.mode === 'assisted' ? ` (${grant.approvals} approval${grant.approvals === 1 ? '' : 's'}${grant.signedApprovals ? ', passkey-signed' : ''})` : grant.signedApprovals ? ' (approvals passkey-signed)' : ''}`,
  ];
  if (grant.stageRuns) lines.push('  runs        staged (every run of the subject is reviewed as one changeset)');
  if (grant.expiresAt !== undefined) lines.push(`  expires     ${isoTime(grant.expiresAt)}`);
  if (grant.budgets) lines.push(`  budgets     ${Object.entries(grant.budgets).map(([m, b]) => `${m} ${JSON.stringify(b)}`).join('; ')}`);
  if (grant.forced) lines.push(`  forced      by ${grant.forced.by}: ${grant.forced.reason}`);
  lines.push(`  reason      ${grant.reason} (${grant.createdBy})`);
  return lines.join('\n');
}

// list --------------------------------------------------------------------------------------

function status(grant: Grant, now: number): string {
  if (grant.revokedAt !== undefined) return 'revoked';
  if (grant.expiresAt !== undefined && grant.expiresAt <= now) return 'expired';
  return grant.forced ? 'active (forced)' : 'active';
}

function shortSubject(grant: Grant): string {
  const s = formatSubject(grant.subject);
  return s.replace(/sha256:([0-9a-f]{12})[0-9a-f]{52}/g, 'sha256:$1…');
}

async function grantList(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...COMMON, subject: { type: 'string' }, all: { type: 'boolean' } });
  if (values.help) {
    io.stdout(GRANT_USAGE);
    return 0;
  }
  noPositionals(positionals, GRANT_USAGE);
  const now = Date.now();
  const subjectText = stringFlag(values, 'subject');
  const subject = subjectText === undefined ? undefined : parseSubject(subjectText);
  const filter: GrantFilter = {};
  if (subject && 'digest' in subject) filter.subjectDigest = subject.digest;
  if (subject && 'name' in subject) filter.subjectName = subject.name;
  if (!values.all) filter.activeAt = now;
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const store = await openForRead(location);
  let grants = store ? await withStore(store, (s) => s.listGrants(filter)) : [];
  if (subject && 'name' in subject) grants = grants.filter((g) => 'signer' in g.subject && g.subject.signer === subject.signer);
  if (values.json) {
    io.stdout(`${JSON.stringify(grants, null, 2)}\n`);
    return 0;
  }
  if (grants.length === 0) {
    io.stdout(values.all ? 'no grants\n' : 'no active grants (--all shows revoked and expired ones)\n');
    return 0;
  }
  io.stdout(
    table(
      ['ID', 'SUBJECT', 'CAPABILITY', 'METHODS', 'MODE', 'APPROVALS', 'EXPIRES', 'STATUS', 'REASON'],
      grants.map((g) => [
        g.id,
        shortSubject(g),
        g.scope ? `${g.capability} (narrowed)` : g.capability,
        g.methods.join(','),
        g.mode,
        `${g.mode === 'assisted' ? String(g.approvals) : '-'}${g.signedApprovals ? ' signed' : ''}`,
        isoTime(g.expiresAt),
        status(g, now),
        g.reason.length > 60 ? `${g.reason.slice(0, 57)}...` : g.reason,
      ]),
    ),
  );
  return 0;
}

// revoke ------------------------------------------------------------------------------------

async function grantRevoke(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...COMMON, reason: { type: 'string' } });
  if (values.help) {
    io.stdout(GRANT_USAGE);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] === undefined) throw new ContainedError('USAGE', `grant revoke takes one grant ID\n\n${GRANT_USAGE}`);
  const id = positionals[0];
  const reason = requireFlag(values, 'reason', GRANT_USAGE);
  const by = author(values);
  const now = Date.now();
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const store = await openForRead(location);
  const result = store
    ? await withStore(store, async (s) => {
        const grants = new GrantService({ store: s, now: () => now });
        const before = await grants.get(id);
        return before ? { before, after: await grants.revoke(id, by, reason) } : undefined;
      })
    : undefined;
  if (!result?.after) throw new ContainedError('NOT_FOUND', `no grant ${id} in ${location.storeFile}`);
  const { before, after } = result;
  if (values.json) {
    io.stdout(`${JSON.stringify(after, null, 2)}\n`);
  } else if (before.revokedAt === undefined) {
    io.stdout(`revoked ${after.id} (${after.capability} for ${formatSubject(after.subject)}); a running host applies it at the next call\n`);
  } else {
    io.stdout(`${after.id} was already revoked at ${isoTime(after.revokedAt)} by ${after.revokedBy ?? '?'}: ${after.revokeReason ?? ''}\n`);
  }
  return 0;
}
