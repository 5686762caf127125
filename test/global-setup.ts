/** Once per test run: say plainly when the PostgreSQL tests are skipped, and how to run them. */
import { pgSkipReason } from './helpers/postgres.js';

export default function setup(): void {
  if (pgSkipReason !== undefined) process.stdout.write(`\n${pgSkipReason}\n\n`);
}
