/**
 * What the operator terminal (`contained operator`) prints for a request and its events.
 *
 * Defends the operator's reading of a request:
 * - What runs is shown exactly: the current proposal's arguments and digest, labelled "as the
 *   agent asked" or "edited by NAME" with the changes against what the agent asked. The approval
 *   count is of that proposal only; approvals of other arguments are named as no longer counting.
 * - Agent-written text (reason, arguments, requested scope, and the scope words in `why`) is
 *   printed JSON-quoted or after a label, never on the line with risk and approvals, and every
 *   control, invisible or direction-changing character in it is printed as a visible `\u{…}`
 *   escape, so it can neither move the cursor, recolour or clear the terminal, nor reorder text.
 */
import type { StagedEffect } from '../../capabilities/sdk/index.js';
import { formatChangeset } from '../changesets/format.js';
import type { OperatorEvent } from './client.js';
import type { WireRequestView } from './protocol.js';

// C0/C1 controls (C1 holds CSI, U+009B: an escape sequence on some terminals), zero-width and
// bidi characters, line/paragraph separators, BOM. Tab and newline too: agent text never breaks lines.
const HIDDEN = /[\u0000-\u001F\u007F-\u009F\u00AD\u200B-\u200F\u2028-\u202E\u2060-\u2069\uFEFF]/g;

/** Agent-written text made inert for a terminal: every hidden character as a visible escape. */
export function inert(text: string): string {
  return text.replace(HIDDEN, (c) => `\\u{${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}}`);
}

/**
 * JSON of agent-written data, made inert (JSON escapes C0 inside strings; this adds C1, bidi and
 * invisibles). Every newline in pretty JSON is structural (string newlines are `\\n`), so each
 * line is made inert on its own.
 */
function json(value: unknown, pretty = false): string {
  const text = JSON.stringify(value === undefined ? null : value, null, pretty ? 2 : undefined) ?? 'null';
  return text.split('\n').map(inert).join('\n');
}

export function formatPending(requests: WireRequestView[], now: number): string {
  if (requests.length === 0) return 'no pending requests\n';
  const sorted = [...requests].sort((a, b) => a.createdAt - b.createdAt);
  return `${sorted.length} pending request${sorted.length === 1 ? '' : 's'}:\n${sorted.map((r) => formatRequest(r, now)).join('')}`;
}

export function formatRequest(r: WireRequestView, now: number): string {
  const target = r.method ? `${r.capability}.${r.method}` : `${r.capability} (capability requested)`;
  const risk = r.risk ? Object.entries(r.risk).filter(([, v]) => v).map(([k]) => k).join(', ') || 'none' : 'unknown (treated as worst case)';
  const { proposal } = r;
  const counted = proposal.approvedBy;
  const earlier = [...new Set(r.approvals.map((a) => a.operator))].filter((name) => !counted.includes(name));
  const lines = [
    `── ${r.id}  ${r.kind}  ${target}`,
    `   agent ${shortSubject(r.subject)}  run ${r.runId}${r.runEnded && r.kind !== 'changeset' ? ' (run ended: approving performs the action without it)' : ''}`,
    `   risk: ${risk}   approvals ${counted.length}/${r.approvalsRequired}${counted.length ? ` (${counted.join(', ')})` : ''}   expires in ${duration(r.expiresAt - now)}`,
  ];
  if (earlier.length) lines.push(`   approvals of other arguments no longer count: ${earlier.join(', ')}`);
  lines.push(`   why: ${inert(r.why)}`);
  if (r.reason) lines.push(`   agent's reason: ${json(r.reason)}`);
  const what = r.method ? 'args' : 'scope';
  if (r.kind === 'changeset') {
    // Every effect of a staged run: what is committed if approved (the digest below binds it).
    const effects = (r.args as { effects?: StagedEffect[] } | undefined)?.effects ?? [];
    lines.push(`   changeset (committed as shown if approved; local effects first):`, ...formatChangeset(effects).map((l) => `     ${l}`));
    lines.push(`   changeset digest: ${proposal.argsDigest}`);
    return `${lines.join('\n')}\n`;
  }
  if (proposal.by === undefined) {
    if (r.method !== undefined || r.requestedScope !== undefined) lines.push(`   ${what} (as the agent asked; these run if approved): ${indent(json(proposal.args, true))}`);
  } else {
    lines.push(`   ${what} (edited by ${proposal.by}; these run if approved): ${indent(json(proposal.args, true))}`);
    lines.push(`   changes from what the agent asked:`, ...changes(r.method ? r.args : r.requestedScope, proposal.args).map((l) => `     ${l}`));
  }
  lines.push(`   ${what} digest: ${proposal.argsDigest}`);
  return `${lines.join('\n')}\n`;
}

/** One line per changed top-level field: `- field: old` / `+ field: new` (or the whole value). */
export function changes(asked: unknown, proposed: unknown): string[] {
  const plain = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!plain(asked) || !plain(proposed)) {
    return json(asked) === json(proposed) ? ['(none)'] : [`- ${json(asked)}`, `+ ${json(proposed)}`];
  }
  const out: string[] = [];
  for (const key of new Set([...Object.keys(asked), ...Object.keys(proposed)])) {
    const was = key in asked ? json(asked[key]) : undefined;
    const now = key in proposed ? json(proposed[key]) : undefined;
    if (was === now) continue;
    if (was !== undefined) out.push(`- ${json(key)}: ${was}`);
    if (now !== undefined) out.push(`+ ${json(key)}: ${now}`);
  }
  return out.length ? out : ['(none)'];
}

export function formatEvent(event: OperatorEvent, now: number): string {
  switch (event.type) {
    case 'created':
      return `new request:\n${formatRequest(event.request, now)}`;
    case 'updated':
    case 'resolved':
      return formatDecision(event.request);
    case 'grant':
      return `grant ${event.grant.id} ${event.change} (${event.grant.capability}, ${event.grant.mode})\n`;
    case 'run':
      return `run ${event.run.id}: ${event.run.status}\n`;
  }
}

/** A request's arguments changed (a new proposal) since it was last shown: all of it, again. */
export function formatNewProposal(r: WireRequestView, now: number): string {
  return `${r.id}: ${r.proposal.by ?? 'someone'} edited the arguments: a new proposal; approvals of other arguments no longer count\n${formatRequest(r, now)}`;
}

export function formatDecision(r: WireRequestView): string {
  switch (r.status) {
    case 'pending':
      return `${r.id}: approvals ${r.proposal.approvedBy.length}/${r.approvalsRequired} (${r.proposal.approvedBy.join(', ')}); waiting for another approver\n`;
    case 'approved':
      return `${r.id}: approved by ${(r.resolvedBy ?? r.proposal.approvedBy).join(', ')}\n`;
    case 'denied':
      return `${r.id}: denied${r.resolvedBy?.length ? ` by ${r.resolvedBy.join(', ')}` : ''}: ${r.denyReason ?? ''}\n`;
    case 'expired':
      return `${r.id}: expired\n`;
    case 'run_gone':
      return `${r.id}: closed (run gone)\n`;
    case 'cancelled':
      return `${r.id}: withdrawn (its run was cancelled${r.resolvedBy?.length ? ` by ${r.resolvedBy.join(', ')}` : ''})\n`;
  }
}

function shortSubject(subject: string | undefined): string {
  if (subject === undefined) return 'unknown';
  return /^sha256:[0-9a-f]{64}$/.test(subject) ? `${subject.slice(0, 19)}…` : inert(subject);
}

function duration(ms: number): string {
  if (ms <= 0) return 'now';
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s}s` : `${Math.round(s / 60)}m`;
}

function indent(text: string): string {
  return text.replace(/\n/g, '\n   ');
}
