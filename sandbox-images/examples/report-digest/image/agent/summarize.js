// Pure helpers: turn a report's text into a short summary, and summaries into a digest.

const MAX_ITEMS = 3;

/** Title (first heading or file name), highlights (bullets) and risks (lines mentioning a risk). */
export function summarizeReport(name, text) {
  const lines = text.split(/\r?\n/).map((line) => line.trim());
  const heading = lines.find((line) => line.startsWith('# '));
  const title = heading ? heading.slice(2).trim() : name.replace(/\.(md|txt)$/i, '');

  const bullets = lines.filter((line) => /^[-*] /.test(line)).map((line) => line.slice(2).trim());
  const risks = bullets.filter((line) => /\b(risk|blocked|delay|late|incident)\b/i.test(line));
  const highlights = bullets.filter((line) => !risks.includes(line)).slice(0, MAX_ITEMS);

  return { name, title, highlights, risks: risks.slice(0, MAX_ITEMS) };
}

/** A Markdown digest: one section per report. */
export function renderDigest(week, summaries) {
  const out = [`# Weekly digest ${week}`, '', `${summaries.length} report(s) this week.`, ''];
  for (const s of summaries) {
    out.push(`## ${s.title}`, '');
    for (const h of s.highlights) out.push(`- ${h}`);
    for (const r of s.risks) out.push(`- **Risk:** ${r}`);
    if (s.highlights.length === 0 && s.risks.length === 0) out.push('- (no bullet points in this report)');
    out.push('', `_Source: ${s.name}_`, '');
  }
  return out.join('\n');
}
