/**
 * The trust tables that commit with this audit log: in the PostgreSQL database when the chain is
 * there (a fleet), else in the SQLite store file. The one place that knows both.
 */
import type { AuditLog } from '../audit/log.js';
import { pgTrustTables } from './pg-tables.js';
import { sqliteTrustTables } from './sqlite-tables.js';
import type { TrustTables } from './tables.js';

export function trustTablesFor(audit: Pick<AuditLog, 'backend' | 'pgPool' | 'db'>): TrustTables {
  const pool = audit.pgPool;
  return audit.backend === 'pg' && pool ? pgTrustTables(pool) : sqliteTrustTables(audit.db);
}
