// records-cleanup — delete records that have not been updated for a while.
//
// Capabilities (see manifest.json):
//   caps.records  sql, read-write: query({ sql, params? }) -> { columns, rows, truncated }
//                                    (each row is an array of cells in the order of `columns`)
//                                  execute({ sql, params? }) -> { changes, lastInsertRowid }   (destructive)

const MIN_DAYS = 30;
const BATCH_SIZE = 50;
const MAX_ROWS = 500;

export default async function main(input, caps) {
  const days = input.olderThanDays;
  if (!Number.isInteger(days) || days < MIN_DAYS) {
    throw new Error(`olderThanDays must be a whole number of at least ${MIN_DAYS}`);
  }

  // 1. Find stale rows. The cut-off is computed by SQLite, so the agent needs no clock.
  const { rows, truncated } = await caps.records.query({
    sql: `SELECT id FROM records
          WHERE updated_at < datetime('now', ?)
          ORDER BY updated_at
          LIMIT ?`,
    params: [`-${days} days`, MAX_ROWS],
  });
  const ids = rows.map(([id]) => id);
  console.log(`${ids.length} record(s) not updated for ${days} days${truncated ? ' (more left for the next run)' : ''}`);

  if (input.dryRun === true || ids.length === 0) {
    return { dryRun: input.dryRun === true, found: ids.length, deleted: 0, ids };
  }

  // 2. Delete them by id, in batches; re-check staleness in the DELETE so a row updated
  //    since step 1 is kept.
  let deleted = 0;
  for (let i = 0; i < ids.length; i += BATCH_SIZE) {
    const batch = ids.slice(i, i + BATCH_SIZE);
    const placeholders = batch.map(() => '?').join(', ');
    const { changes } = await caps.records.execute(
      {
        sql: `DELETE FROM records WHERE id IN (${placeholders}) AND updated_at < datetime('now', ?)`,
        params: [...batch, `-${days} days`],
      },
      { reason: `Delete ${batch.length} record(s) not updated for ${days} days (ids ${batch[0]}…${batch[batch.length - 1]})` },
    );
    deleted += changes;
  }

  return { dryRun: false, found: ids.length, deleted, ids };
}
