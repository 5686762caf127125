/**
 * The audit log's own PostgreSQL connections (a small pool per process), for the writer
 * (log.ts) and the readers (source.ts) when the store is a PostgreSQL database several hosts share.
 *
 * - BIGINT and NUMERIC come back as JS numbers (seq, at, created_at are epoch ms and counters, far
 *   below 2^53), so rows look like the SQLite ones and the same record code hashes them.
 * - A server that goes away fails fast and typed: connecting gives up after `connectTimeoutMs`,
 *   a query after `queryTimeoutMs`, and errors on idle or checked-out connections are logged
 *   instead of crashing the process (pg emits them as events).
 * - `AUDIT_LOCK_KEY` is the advisory lock every appender takes inside its batch transaction, so
 *   the hosts of a fleet extend one chain one batch at a time.
 */
import pg from 'pg';
import type { Logger } from 'pino';
import { ContainedError, type ErrorCode } from '../../runtime/errors.js';
import { redactUrl } from '../store/store-location.js';

/** pg_advisory_xact_lock key of the audit chain ("contained audit", fixed for every host and version). */
export const AUDIT_LOCK_KEY = 0x636f6e7461756469n.toString();

const INT8_OID = 20;
const NUMERIC_OID = 1700;

function typeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
  if (oid === INT8_OID || oid === NUMERIC_OID) return (value: string) => Number(value);
  return pg.types.getTypeParser(oid, format as 'text');
}

export interface AuditPoolOptions {
  logger?: Logger | undefined;
  connectTimeoutMs?: number;
  queryTimeoutMs?: number;
  max?: number;
}

export function openAuditPool(url: string, options: AuditPoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    query_timeout: options.queryTimeoutMs ?? 30_000,
    idleTimeoutMillis: 30_000,
    types: { getTypeParser: typeParser as typeof pg.types.getTypeParser },
    application_name: 'contained-audit',
  });
  // An idle connection the server closes (restart, failover) must not crash the host.
  pool.on('error', (error) => options.logger?.warn({ err: error.message }, 'audit: a PostgreSQL connection failed'));
  return pool;
}

/** A connection for one transaction; its errors while checked out are logged, not thrown as events. */
export async function checkout(pool: pg.Pool, logger?: Logger): Promise<{ client: pg.PoolClient; release(broken?: boolean): void }> {
  const client = await pool.connect();
  const onError = (error: Error): void => logger?.warn({ err: error.message }, 'audit: a PostgreSQL connection failed');
  client.on('error', onError);
  return {
    client,
    release(broken = false) {
      client.off('error', onError);
      client.release(broken);
    },
  };
}

/** A driver error as a typed error: `code` with the URL redacted (never the password, never a stack). */
export function pgError(code: ErrorCode, url: string, what: string, error: unknown): ContainedError {
  if (error instanceof ContainedError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ContainedError(code, `audit: ${what} (${redactUrl(url)}): ${message}`, { cause: error });
}
