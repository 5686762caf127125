/**
 * Child process for the SIGKILL durability test: opens the store, records a decision (insert,
 * two approvals, resolve, claim), prints `acknowledged` and then idles until it is killed. The
 * parent kills it with SIGKILL right after the line arrives and reopens the file.
 */
import { openSqliteStore } from '../../host/store/sqlite-store.js';
import { request } from './store-fixtures.js';

const file = process.argv[2];
const synchronous = process.argv[3] === 'normal' ? 'normal' : 'full';
if (file === undefined) throw new Error('usage: store-sigkill-child.ts <file> [full|normal]');

const store = await openSqliteStore(file, { synchronous });
await store.insertRequest(request({ id: 'killed', approvalsRequired: 2 }));
await store.addApproval('killed', { operator: 'alice', at: 2_000 });
await store.addApproval('killed', { operator: 'bob', at: 2_001 });
const resolved = await store.resolveRequest('killed', { status: 'approved', at: 2_002, by: ['alice', 'bob'] });
const claimed = await store.claimExecution('killed', 2_003);
process.stdout.write(`acknowledged ${resolved.ok} ${claimed}\n`);
// Never close: the store must not depend on a clean shutdown (the WAL is not checkpointed).
setInterval(() => undefined, 60_000);
