/**
 * `contained token create|list|revoke`: operator tokens, managed from a terminal on the host.
 * `create` prints the token once (stdout, so a script can capture it) with a warning on stderr that
 * it is not stored anywhere; `list` never shows hashes; `revoke` takes effect at the token's next
 * use (open operator connections are the operator channel's to close).
 *
 * Exit codes: 0 ok; 2 usage or invalid argument (bad name or role, name in use); 1 anything else.
 */
import { ContainedError } from '../../runtime/errors.js';
import { ROLES, type Role, roleSchema, type TokenRecord } from '../model.js';
import { locateState, openForRead, openForWrite, withStore } from '../store/location.js';
import { createToken } from '../tokens.js';
import { type CliIo, parseFlags, runSubcommand, STATE_FLAGS, stringFlag } from './args.js';
import { author, isoTime, noPositionals, requireFlag, table } from './grant.js';

export const TOKEN_USAGE = `Usage:
  contained token create --name NAME --role ${ROLES.join('|')} [--by NAME] [--json]
                         [--config FILE] [--data-dir DIR]
  contained token list [--json] [--config FILE] [--data-dir DIR]
  contained token revoke ID [--config FILE] [--data-dir DIR]

Roles: viewer sees requests; approver also decides; admin also manages grants and tokens;
platform is for the HTTP API. The token is printed once and only its sha256 is stored.
`;

const COMMON = STATE_FLAGS;

export async function tokenCommand(argv: string[], io: CliIo): Promise<number> {
  return runSubcommand('token', argv, io, TOKEN_USAGE, { create: tokenCreate, list: tokenList, revoke: tokenRevoke });
}

/** A token record without its hash: what any output may show. */
function publicView(record: TokenRecord): Omit<TokenRecord, 'hash'> {
  const { hash: _hash, ...rest } = record;
  return rest;
}

async function tokenCreate(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, { ...COMMON, name: { type: 'string' }, role: { type: 'string' }, by: { type: 'string' } });
  if (values.help) {
    io.stdout(TOKEN_USAGE);
    return 0;
  }
  noPositionals(positionals, TOKEN_USAGE);
  const name = requireFlag(values, 'name', TOKEN_USAGE);
  const roleText = requireFlag(values, 'role', TOKEN_USAGE);
  const role = roleSchema.safeParse(roleText);
  if (!role.success) throw new ContainedError('USAGE', `--role is one of ${ROLES.join(', ')} (got ${JSON.stringify(roleText)})`);
  const by = author(values);
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const { token, record } = await withStore(await openForWrite(location), (store) => createToken({ name, role: role.data as Role, createdBy: by }, store));
  if (values.json) {
    io.stdout(`${JSON.stringify({ ...publicView(record), token })}\n`);
  } else {
    io.stdout(`${token}\n`);
    io.stderr(`token ${record.id} for ${record.name} (${record.role}) created.\n`);
  }
  io.stderr('warning: this is the only time the token is shown; it is not stored (only its sha256 is). Keep it secret.\n');
  return 0;
}

async function tokenList(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, COMMON);
  if (values.help) {
    io.stdout(TOKEN_USAGE);
    return 0;
  }
  noPositionals(positionals, TOKEN_USAGE);
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const store = await openForRead(location);
  const tokens = (store ? await withStore(store, (s) => s.listTokens()) : []).map(publicView);
  if (values.json) {
    io.stdout(`${JSON.stringify(tokens, null, 2)}\n`);
    return 0;
  }
  if (tokens.length === 0) {
    io.stdout('no tokens\n');
    return 0;
  }
  io.stdout(
    table(
      ['ID', 'NAME', 'ROLE', 'CREATED', 'BY', 'STATUS'],
      tokens.map((t) => [t.id, t.name, t.role, isoTime(t.createdAt), t.createdBy, t.revokedAt === undefined ? 'active' : `revoked ${isoTime(t.revokedAt)}`]),
    ),
  );
  return 0;
}

async function tokenRevoke(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseFlags(argv, COMMON);
  if (values.help) {
    io.stdout(TOKEN_USAGE);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] === undefined) throw new ContainedError('USAGE', `token revoke takes one token ID\n\n${TOKEN_USAGE}`);
  const id = positionals[0];
  const location = await locateState({ configFlag: stringFlag(values, 'config'), dataDirFlag: stringFlag(values, 'data-dir') });
  const store = await openForRead(location);
  const now = Date.now();
  const result = store
    ? await withStore(store, async (s) => {
        const before = (await s.listTokens()).find((t) => t.id === id);
        return before ? { before, after: await s.revokeToken(id, now) } : undefined;
      })
    : undefined;
  if (!result?.after) throw new ContainedError('NOT_FOUND', `no token ${id} in ${location.storeFile}`);
  const { before, after } = result;
  if (values.json) io.stdout(`${JSON.stringify(publicView(after), null, 2)}\n`);
  else if (before.revokedAt === undefined) io.stdout(`revoked ${after.id} (${after.name}, ${after.role})\n`);
  else io.stdout(`${after.id} (${after.name}) was already revoked at ${isoTime(after.revokedAt)}\n`);
  return 0;
}
