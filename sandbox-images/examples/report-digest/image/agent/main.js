// report-digest — summarise this week's status reports, save the digest and email it.
//
// Capabilities (see manifest.json):
//   caps.reports  fs, read-only: list(path?) -> [{ name, type, size }], read(path) -> string
//   caps.out      fs:            write({ path, content })
//   caps.mail     outbox:        send({ to, subject, text })
import { renderDigest, summarizeReport } from './summarize.js';

const REPORT_FILE = /\.(md|txt)$/i;

export default async function main(input, caps) {
  const { to, week } = input;
  if (typeof to !== 'string' || typeof week !== 'string') {
    throw new Error('input needs "to" (email address) and "week" (e.g. "2024-W23")');
  }

  // 1. Find the reports: plain files with a report extension, in a stable order.
  const listing = await caps.reports.list();
  const reportFiles = listing
    .filter((entry) => entry.type === 'file' && REPORT_FILE.test(entry.name))
    .map((entry) => entry.name)
    .sort();
  console.log(`found ${reportFiles.length} report(s)`);

  // 2. Read and summarise each one.
  const summaries = [];
  for (const name of reportFiles) {
    const text = await caps.reports.read(name);
    summaries.push(summarizeReport(name, text));
  }

  // 3. Save the digest, then email it (the email is what a reviewer looks at).
  const digest = renderDigest(week, summaries);
  const file = `digest-${week}.md`;
  await caps.out.write({ path: file, content: digest }, { reason: `Save the ${week} digest of ${summaries.length} reports` });

  const subject = `Weekly digest ${week}: ${summaries.length} reports, ${countRisks(summaries)} open risks`;
  await caps.mail.send({ to, subject, text: digest }, { reason: `Email the ${week} digest to ${to}` });

  return { week, reports: summaries.length, file, emailedTo: to, subject };
}

function countRisks(summaries) {
  return summaries.reduce((total, s) => total + s.risks.length, 0);
}
