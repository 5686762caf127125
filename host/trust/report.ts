/**
 * The trust report, built once here for `contained trust report` (the CLI's rows) and the web
 * console's trust page (`trustReport` in console/oversight.ts, the compact figures approvers see):
 * per subject its phase, and per action its current mode, the ledger's counts and rates, the shadow
 * record, and where it stands against the promotion bar. Read-only.
 *
 * Which actions: every action with ledger events, and every action an active grant names, so a
 * grant never used is listed too —
 * - under the grant's own subject: an image digest, or `name@signer` for a signed-name grant (it
 *   lets any image of that name signed by that key act, so the report shows it as such; the runs
 *   it covered appear under their digests, with the mode it gives them);
 * - a `*` grant as the one action `capability.*` (every method, including any the host adds
 *   later): what the grant says, readable from the data folder alone, without the host config.
 */
import { formatSubject } from '../grants.js';
import { type ActionFigures, actionFigures, type FigureSources, phaseForSubject, promotionBar } from './figures.js';
import type { ActionKey, Counts } from './ledger.js';
import { ceilingReason, type Phase, pct } from './policy.js';

/** One subject's phase and the figures of each of its actions (sorted by action). */
export interface SubjectFigures {
  subject: string;
  phase: Phase;
  actions: ActionFigures[];
}

/** Every subject with ledger events or an active grant (sorted), or just `subject`. */
export async function trustFigures(src: FigureSources, now: number, subject?: string): Promise<SubjectFigures[]> {
  const grants = await src.grants(now);
  const keys = new Map<string, ActionKey>();
  const add = (k: ActionKey): void => {
    keys.set(`${k.subject}\u0000${k.capability}\u0000${k.method}`, k);
  };
  for (const k of await src.tables.actions(subject)) add(k);
  for (const g of grants) {
    const s = formatSubject(g.subject);
    if (subject !== undefined && s !== subject) continue;
    for (const method of g.methods) add({ subject: s, capability: g.capability, method });
  }
  const bySubject = new Map<string, ActionKey[]>();
  for (const k of keys.values()) bySubject.set(k.subject, [...(bySubject.get(k.subject) ?? []), k]);
  return Promise.all(
    [...bySubject.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(async ([s, actions]) => ({
        subject: s,
        phase: await phaseForSubject(src, s, now, grants),
        actions: await Promise.all(actions.sort((a, b) => `${a.capability}.${a.method}`.localeCompare(`${b.capability}.${b.method}`)).map((k) => actionFigures(src, k, now, grants))),
      })),
  );
}

export interface ActionRow {
  action: string;
  mode: string;
  ceiling: string | undefined;
  assisted: { approvedAsIs: number; edited: number; denied: number; editRate: string };
  executed: { actions: number; reviews: number; ok: number; error: number; critical: number; errorRate: string; pending: number };
  lastDays: Counts;
  lastEvents: Counts;
  shadow: { wouldAllowNow: boolean; wouldAllow: number; approved: number; edited: number; denied: number };
  bar: string;
  proposal: string | undefined;
}

export interface SubjectReport {
  subject: string;
  phase: 1 | 2 | 3;
  why: string;
  actions: ActionRow[];
}

/** The CLI's report: `trustFigures` as rows. */
export async function buildTrustReport(src: FigureSources, now: number, subject?: string): Promise<SubjectReport[]> {
  return (await trustFigures(src, now, subject)).map((s) => ({ subject: s.subject, phase: s.phase.phase, why: s.phase.why, actions: s.actions.map(row) }));
}

function row(f: ActionFigures): ActionRow {
  const key = f.key;
  const l = f.stats.lifetime;
  const recent = f.stats.recentAssisted;
  const window = f.stats.reviewWindow;
  return {
    action: `${key.capability}.${key.method}`,
    mode: f.mode,
    ceiling: ceilingReason(f.risk),
    assisted: { approvedAsIs: l.approved, edited: l.edited, denied: l.denied, editRate: pct(recent.count > 0 ? (recent.edited + recent.denied) / recent.count : 0) },
    executed: { actions: l.executed + l.ok + l.error + l.critical, reviews: l.ok + l.error + l.critical, ok: l.ok, error: l.error, critical: l.critical, errorRate: pct(window.count > 0 ? window.errors / window.count : 0), pending: l.executed },
    lastDays: f.stats.lastDays,
    lastEvents: f.stats.lastEvents,
    shadow: { wouldAllowNow: f.wouldAllow, wouldAllow: f.stats.shadow.wouldAllow, approved: f.stats.shadow.approved, edited: f.stats.shadow.edited, denied: f.stats.shadow.denied },
    bar: promotionBar(f),
    proposal: f.openProposal,
  };
}

function shortSubject(subject: string): string {
  return /^sha256:[0-9a-f]{64}$/.test(subject) ? `${subject.slice(0, 19)}…` : subject;
}

/** The report as text tables, one per subject. */
export function formatTrustReport(report: readonly SubjectReport[], windowDays: number): string {
  if (report.length === 0) return 'no actions in the ledger and no active grants\n';
  const out: string[] = [];
  for (const s of report) {
    out.push(`${shortSubject(s.subject)}  phase ${s.phase}: ${s.why}`);
    const header = ['ACTION', 'MODE', 'ASSISTED ok/edit/deny', 'EDIT%', `${windowDays}d ok/edit/deny`, 'EXECUTED reviews ok/err/crit', 'ERR%', 'SHADOW allow(ok/edit/deny)', 'PROMOTION'];
    const rows = s.actions.map((a) => [
      a.action,
      a.mode,
      `${a.assisted.approvedAsIs}/${a.assisted.edited}/${a.assisted.denied}`,
      a.assisted.editRate,
      `${a.lastDays.approved}/${a.lastDays.edited}/${a.lastDays.denied}`,
      `${a.executed.reviews} ${a.executed.ok}/${a.executed.error}/${a.executed.critical}${a.executed.pending > 0 ? ` (+${a.executed.pending} unreviewed)` : ''}`,
      a.executed.errorRate,
      `${a.shadow.wouldAllow}(${a.shadow.approved}/${a.shadow.edited}/${a.shadow.denied})`,
      a.mode === 'contained' || a.mode === 'executed' ? a.bar : a.ceiling ? `never (${a.ceiling})` : a.proposal ? `proposed ${a.proposal}` : a.mode === 'assisted' ? (a.bar === 'met' ? 'bar met' : a.bar) : '—',
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ');
    out.push(`  ${line(header)}`);
    for (const r of rows) out.push(`  ${line(r)}`);
    out.push('');
  }
  return `${out.join('\n')}`;
}
