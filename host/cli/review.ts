/**
 * `contained review list|mark`: the after-the-fact review queue of executed actions.
 *
 * Two ways in, chosen by what is given:
 * - through a running host's operator channel, with `--url` and `--token` (or CONTAINED_URL and
 *   CONTAINED_TOKEN): the verdict is attributed to the token's operator (approver or admin), and a
 *   demotion it causes takes effect in the host at once and is announced to every operator;
 * - on the host's own data folder, without a host (`--data-dir` / `--config`): whoever can run this
 *   against the folder acts as a terminal approver, named by `--by` (default the login name); a
 *   demotion reaches a running host at its next call, without the announcement.
 *
 * Exit codes: 0 done; 1 refused (NOT_FOUND, ALREADY_RESOLVED, FORBIDDEN…); 2 usage.
 */
import { ContainedError } from '../../runtime/errors.js';
import { OperatorClient } from '../operator/client.js';
import { locateState } from '../store/location.js';
import { openLocalTrust } from '../trust/local.js';
import { type Demotion, REVIEW_STATUSES, REVIEW_VERDICTS, type Review, type ReviewStatus, type ReviewVerdict } from '../trust/model.js';
import { type CliIo, intFlag, parseFlags, stringFlag } from './args.js';
import { endpointFrom } from './endpoint.js';
import { author } from './grant.js';

export const REVIEW_USAGE = `Usage:
  contained review list [--status pending|ok|error|critical|all] [--limit N] [--json]
  contained review mark ID ok|error|critical [--note TEXT] [--json]

  Through a running host:  --url http://HOST:PORT (or ws://HOST:PORT/v1/operator) --token TOKEN
                           (or CONTAINED_URL / CONTAINED_TOKEN; approver or admin token)
  On the data folder:      [--data-dir DIR] [--config FILE] [--by NAME]

An error or critical verdict needs --note. A critical verdict (or an error rate over the
threshold) moves the action back to assisted at once.
`;

type Env = Record<string, string | undefined>;

const FLAGS = {
  url: { type: 'string' },
  token: { type: 'string' },
  'data-dir': { type: 'string' },
  config: { type: 'string' },
  by: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

interface ReviewOps {
  list(filter: { status?: ReviewStatus | 'all'; limit?: number }): Promise<Review[]>;
  mark(input: { reviewId: string; verdict: ReviewVerdict; note?: string }): Promise<{ review: Review; demotion?: Demotion }>;
  close(): Promise<void>;
}

/** The channel when a URL and token are given, else the local data folder. */
export async function reviewOps(values: Record<string, string | boolean | string[] | undefined>, env: Env): Promise<ReviewOps> {
  const endpoint = endpointFrom(values, env, false);
  const token = stringFlag(values, 'token') ?? env.CONTAINED_TOKEN;
  if (endpoint !== undefined && token !== undefined && stringFlag(values, 'data-dir') === undefined) {
    const client = await OperatorClient.connect({ url: endpoint.operator, token });
    return { list: (f) => client.listReviews(f), mark: (i) => client.markReview(i), close: () => client.close() };
  }
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const local = await openLocalTrust(location);
  const by = author(values);
  return {
    list: async (f) => local.trust.listReviews(f),
    mark: (i) => local.trust.markReview(by, i.reviewId, i.verdict, i.note),
    close: () => local.close(),
  };
}

export async function reviewCommand(argv: string[], io: CliIo, env: Env = process.env): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout(REVIEW_USAGE);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'list' && sub !== 'mark') throw new ContainedError('USAGE', `unknown review command "${sub}" (list, mark)\n\n${REVIEW_USAGE}`);
  const spec = sub === 'list' ? { ...FLAGS, status: { type: 'string' as const }, limit: { type: 'string' as const } } : { ...FLAGS, note: { type: 'string' as const } };
  const { values, positionals } = parseFlags(rest, spec);
  if (values.help) {
    io.stdout(REVIEW_USAGE);
    return 0;
  }
  const json = values.json === true;
  if (sub === 'list') {
    if (positionals.length > 0) throw new ContainedError('USAGE', 'review list takes no arguments');
    const status = stringFlag(values, 'status');
    if (status !== undefined && status !== 'all' && !(REVIEW_STATUSES as readonly string[]).includes(status)) throw new ContainedError('USAGE', `--status takes ${REVIEW_STATUSES.join(', ')} or all`);
    const limit = intFlag(values, 'limit');
    const ops = await reviewOps(values, env);
    try {
      const reviews = await ops.list({ ...(status ? { status: status as ReviewStatus | 'all' } : {}), ...(limit ? { limit } : {}) });
      if (json) io.stdout(`${JSON.stringify(reviews)}\n`);
      else if (reviews.length === 0) io.stdout(`no ${status ?? 'pending'} reviews\n`);
      else for (const r of reviews) io.stdout(formatReview(r));
      return 0;
    } finally {
      await ops.close();
    }
  }
  const [id, verdict, ...extra] = positionals;
  if (id === undefined || verdict === undefined || extra.length > 0) throw new ContainedError('USAGE', `review mark takes ID and a verdict\n\n${REVIEW_USAGE}`);
  if (!(REVIEW_VERDICTS as readonly string[]).includes(verdict)) throw new ContainedError('USAGE', `the verdict is ok, error or critical (got ${JSON.stringify(verdict)})`);
  const note = stringFlag(values, 'note');
  if (verdict !== 'ok' && (note === undefined || note.trim() === '')) throw new ContainedError('USAGE', `an ${verdict} verdict needs --note saying what went wrong`);
  const ops = await reviewOps(values, env);
  try {
    const result = await ops.mark({ reviewId: id, verdict: verdict as ReviewVerdict, ...(note !== undefined ? { note } : {}) });
    if (json) io.stdout(`${JSON.stringify(result)}\n`);
    else {
      io.stdout(`review ${result.review.id}: ${result.review.status} (${result.review.capability}.${result.review.method}, run ${result.review.runId.slice(0, 8)})\n`);
      const d = result.demotion;
      if (d) io.stdout(`demoted ${d.capability}.${d.method} to assisted (${d.trigger}): revoked ${d.revokedGrants.join(', ')}; wrote ${d.addedGrants.join(', ') || 'nothing (an assisted grant already covers it)'}\n`);
    }
    return 0;
  } finally {
    await ops.close();
  }
}

export function formatReview(r: Review): string {
  const outcome = r.action.outcome as { ok?: boolean; summary?: string; error?: string } | undefined;
  const args = 'args' in r.action ? JSON.stringify(r.action.args) : `sha256:${String(r.action.argsSha256).slice(0, 16)}… (${String(r.action.argsBytes)} bytes)`;
  const lines = [
    `${r.id}  ${r.status.padEnd(8)} ${r.capability}.${r.method}  run ${r.runId.slice(0, 8)}  ${new Date(r.createdAt).toISOString()}`,
    `   subject ${r.subject.startsWith('sha256:') ? `${r.subject.slice(0, 19)}…` : r.subject}  grant ${r.grantId}`,
    `   args ${args.length > 300 ? `${args.slice(0, 299)}…` : args}`,
  ];
  if (typeof r.action.reason === 'string') lines.push(`   reason ${JSON.stringify(r.action.reason)}`);
  if (outcome) lines.push(`   outcome ${outcome.ok ? `ok, ${outcome.summary ?? ''}` : `failed ${outcome.error ?? ''}`}`);
  if (r.markedBy) lines.push(`   marked ${r.status} by ${r.markedBy}${r.note ? `: ${r.note}` : ''}`);
  return `${lines.join('\n')}\n`;
}
