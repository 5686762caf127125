/**
 * `contained trust report|proposals|accept|decline`: the trust ledger and promotion proposals.
 *
 * `report` and `proposals` read the data folder (read-only; safe while the host runs). `accept` and
 * `decline` go through a running host's operator channel when `--url`/`--token` (or
 * CONTAINED_URL/CONTAINED_TOKEN) are given — an admin token, and every operator is told — else
 * they act on the data folder as a terminal admin (`--by`), and a running host sees the new grant
 * at its next call.
 *
 * With a PostgreSQL store the ledger, proposals and active grants are the fleet's, read from
 * PostgreSQL.
 *
 * Exit codes: 0 done; 1 refused (PROMOTION_REFUSED, NOT_FOUND, ALREADY_RESOLVED…); 2 usage.
 */
import { ContainedError } from '../../runtime/errors.js';
import type { Grant } from '../model.js';
import { OperatorClient } from '../operator/client.js';
import { locateState, openForRead } from '../store/location.js';
import { openLocalTrust, openTrustReader, riskFromConfig } from '../trust/local.js';
import { PROPOSAL_STATUSES, type Proposal, type ProposalStatus } from '../trust/model.js';
import { DEFAULT_TRUST_CONFIG } from '../trust/policy.js';
import { activeGrants } from '../trust/grant-changes.js';
import { buildTrustReport, formatTrustReport } from '../trust/report.js';
import { type CliIo, parseFlags, stringFlag } from './args.js';
import { endpointFrom } from './endpoint.js';
import { author } from './grant.js';

export const TRUST_USAGE = `Usage:
  contained trust report [--subject SUBJECT] [--json]
  contained trust proposals [--status proposed|accepted|declined|withdrawn] [--json]
  contained trust accept ID --reason TEXT      (admin: writes the executed grant)
  contained trust decline ID --reason TEXT
  (all: [--data-dir DIR] [--config FILE]; accept/decline also --url URL --token TOKEN, or --by NAME locally)

The report shows, per subject, its phase (1 all assisted, 2 some actions executed, 3 autonomy
expanded on established error-rate data) and per action its mode, assisted verdicts (approved
as-is / edited / denied), executed reviews (ok / error / critical), rates, shadow evidence and
where it stands against the promotion bar.
`;

type Env = Record<string, string | undefined>;

const COMMON = { 'data-dir': { type: 'string' }, config: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;

export async function trustCommand(argv: string[], io: CliIo, env: Env = process.env): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout(TRUST_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'report' || sub === 'proposals') return read(sub, rest, io);
  if (sub === 'accept' || sub === 'decline') return decide(sub, rest, io, env);
  throw new ContainedError('USAGE', `unknown trust command "${sub}" (report, proposals, accept, decline)\n\n${TRUST_USAGE}`);
}

async function read(sub: 'report' | 'proposals', argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...COMMON, subject: { type: 'string' }, status: { type: 'string' } });
  if (values.help) {
    io.stdout(TRUST_USAGE);
    return 0;
  }
  if (positionals.length > 0) throw new ContainedError('USAGE', `trust ${sub} takes no arguments`);
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const config = location.config?.trust ?? DEFAULT_TRUST_CONFIG;
  const reader = await openTrustReader(location);
  try {
    if (sub === 'proposals') {
      const status = stringFlag(values, 'status');
      if (status !== undefined && !(PROPOSAL_STATUSES as readonly string[]).includes(status)) throw new ContainedError('USAGE', `--status takes ${PROPOSAL_STATUSES.join(', ')}`);
      const list = await reader.tables.proposals(status as ProposalStatus | undefined);
      if (values.json) io.stdout(`${JSON.stringify(list)}\n`);
      else if (list.length === 0) io.stdout('no promotion proposals\n');
      else for (const p of list) io.stdout(formatProposal(p));
      return 0;
    }
    const riskOf = await riskFromConfig(location);
    const now = Date.now();
    const inStore = location.store.kind === 'postgres' ? await activeInStore(location) : undefined;
    const db = reader.db;
    const grants = async (at: number): Promise<Grant[]> => inStore ?? (db ? activeGrants(db, at) : []);
    const report = await buildTrustReport(
      { grants, tables: reader.tables, config, ...(riskOf ? { riskOf } : {}) },
      now,
      stringFlag(values, 'subject'),
    );
    io.stdout(values.json ? `${JSON.stringify(report)}\n` : formatTrustReport(report, config.windowDays));
    return 0;
  } finally {
    await reader.close();
  }
}

/** The active grants of a PostgreSQL store (the local file's grants table is empty then). */
async function activeInStore(location: Awaited<ReturnType<typeof locateState>>): Promise<Grant[]> {
  const store = await openForRead(location);
  if (!store) return [];
  try {
    return await store.listGrants({ activeAt: Date.now() });
  } finally {
    await store.close();
  }
}

async function decide(verdict: 'accept' | 'decline', argv: string[], io: CliIo, env: Env): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...COMMON, reason: { type: 'string' }, url: { type: 'string' }, token: { type: 'string' }, by: { type: 'string' } });
  if (values.help) {
    io.stdout(TRUST_USAGE);
    return 0;
  }
  const [id, ...extra] = positionals;
  if (id === undefined || extra.length > 0) throw new ContainedError('USAGE', `trust ${verdict} takes one proposal id`);
  const reason = stringFlag(values, 'reason');
  if (reason === undefined || reason.trim() === '') throw new ContainedError('USAGE', `trust ${verdict} needs --reason`);
  const endpoint = endpointFrom(values, env, false);
  const token = stringFlag(values, 'token') ?? env.CONTAINED_TOKEN;
  let proposal: Proposal;
  if (endpoint !== undefined && token !== undefined && stringFlag(values, 'data-dir') === undefined) {
    const client = await OperatorClient.connect({ url: endpoint.operator, token });
    try {
      proposal = await client.decidePromotion({ proposalId: id, verdict, reason });
    } finally {
      await client.close();
    }
  } else {
    const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
    const local = await openLocalTrust(location);
    try {
      proposal = await local.trust.promotions.decide(author(values), id, verdict, reason);
    } finally {
      await local.close();
    }
  }
  io.stdout(values.json ? `${JSON.stringify(proposal)}\n` : formatProposal(proposal));
  return 0;
}

export function formatProposal(p: Proposal): string {
  const e = p.evidence as { assistedReviews?: number; approvedAsIs?: number; edited?: number; denied?: number; editRate?: string };
  const head = `${p.id}  ${p.status.padEnd(9)} ${p.capability}.${p.method}  subject ${p.subject.startsWith('sha256:') ? `${p.subject.slice(0, 19)}…` : p.subject}  ${new Date(p.createdAt).toISOString()}`;
  const evidence = `   evidence: ${e.assistedReviews ?? '?'} assisted reviews (${e.approvedAsIs ?? '?'} as-is, ${e.edited ?? '?'} edited, ${e.denied ?? '?'} denied), edit rate ${e.editRate ?? '?'}, grant ${p.grantId}`;
  const decided = p.decidedBy ? `\n   ${p.status} by ${p.decidedBy}: ${p.reason ?? ''}${p.newGrantId ? ` → executed grant ${p.newGrantId}` : ''}` : '';
  return `${head}\n${evidence}${decided}\n`;
}
