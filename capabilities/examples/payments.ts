/**
 * `payments` — an example of a capability a platform team defines itself with the SDK (walked
 * through in docs/custom-capability.md). `refund` moves money, so it is marked `financial`: the
 * gate never lets it run autonomously and asks two people. `lookup` only reads.
 *
 * Defends: refunds above the scope's per-refund `maxAmountCents` (pure check, `OUT_OF_SCOPE`),
 * refunds in another currency than the scope's (`OUT_OF_SCOPE`), refunding more than an order has
 * left (the ledger's transaction, `CAPABILITY_FAILED` with `data.reason = 'over-refund'`).
 * Attenuation can lower the limit, never raise it or change the currency (`INVALID_SCOPE`).
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { definePlugin } from '../plugin.js';
import { type CapabilityInstance, type InstanceOptions, IN_SCOPE, createInstance, defineCapability, method, outOfScope } from '../sdk/index.js';
import { createSqliteLedger, type PaymentsLedger } from './ledger.js';

export type { OrderView, PaymentsLedger, RefundReceipt, SqliteLedgerOptions } from './ledger.js';
export { createSqliteLedger } from './ledger.js';

export const paymentsScopeSchema = z.strictObject({
  /** Largest single refund, in the currency's minor unit (cents). */
  maxAmountCents: z.number().int().positive(),
  /** ISO 4217 code, e.g. `EUR`. */
  currency: z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR'),
});
export type PaymentsScope = z.infer<typeof paymentsScopeSchema>;

export interface PaymentsDeps {
  ledger: PaymentsLedger;
}

const orderId = z.string().min(1).max(64).regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, - and _');
const order = z.strictObject({
  orderId: z.string(),
  status: z.string(),
  currency: z.string(),
  amountCents: z.number().int(),
  refundedCents: z.number().int(),
  refundableCents: z.number().int(),
});
const receipt = z.strictObject({
  refundId: z.string(),
  orderId: z.string(),
  amountCents: z.number().int(),
  currency: z.string(),
  refundedCents: z.number().int(),
  refundableCents: z.number().int(),
  createdAt: z.string(),
});
const refundArgs = z.strictObject({
  orderId,
  amountCents: z.number().int().positive().max(1_000_000_000),
  reason: z.string().trim().min(1).max(500),
});

export const paymentsCapability = defineCapability<PaymentsScope, PaymentsDeps>({
  name: 'payments',
  description: 'Look up orders and refund them, one currency, up to a per-refund limit.',
  scope: paymentsScopeSchema,
  intersect: (parent, narrower) => {
    if (narrower.currency !== parent.currency) throw new ContainedError('INVALID_SCOPE', 'payments: cannot change the currency');
    return { currency: parent.currency, maxAmountCents: Math.min(parent.maxAmountCents, narrower.maxAmountCents) };
  },
  describeScope: (s) => `refunds in ${s.currency} of at most ${s.maxAmountCents} cents each`,
  methods: {
    lookup: method({
      description: 'Get an order by id: status, amount, already refunded, still refundable (null if there is no such order).',
      args: z.strictObject({ orderId }),
      result: order.nullable(),
      risk: { readOnly: true, openWorld: false },
      run: async ({ orderId }, { deps }: { deps: PaymentsDeps }) => (await deps.ledger.lookup(orderId)) ?? null,
    }),
    refund: method({
      description: 'Refund part or all of an order to the customer (amount in cents, with a reason); this moves money and cannot be undone.',
      args: refundArgs,
      result: receipt,
      risk: { financial: true, destructive: false, reversible: false, openWorld: true, readOnly: false },
      inScope: (a: z.output<typeof refundArgs>, s: PaymentsScope) =>
        a.amountCents <= s.maxAmountCents ? IN_SCOPE : outOfScope(`payments: ${a.amountCents} cents is above the ${s.maxAmountCents} cents limit per refund`),
      run: async (a, { scope, deps }: { scope: PaymentsScope; deps: PaymentsDeps }) => {
        if (deps.ledger.currency !== scope.currency) {
          throw new ContainedError('OUT_OF_SCOPE', `payments: the ledger is in ${deps.ledger.currency}, this grant only covers ${scope.currency}`);
        }
        return deps.ledger.refund(a);
      },
    }),
  },
});

/** Bind `payments` to a scope and a ledger. A bad scope throws `INVALID_SCOPE`. */
export function createPayments(scope: unknown, deps: PaymentsDeps, options: InstanceOptions = {}): CapabilityInstance<PaymentsScope, PaymentsDeps> {
  return createInstance(paymentsCapability, scope, deps, options);
}

const NO_LEDGER =
  'no refunds ledger is configured: set "host": { "ledger": { "file": …, "currency": … } } on the capability in the host config (contained run cannot grant payments)';

/** The ledger one payments instance refunds from (`capabilities.<binding>.host`); the file is relative to the config file's folder. */
export const paymentsHostOptionsSchema = z.strictObject(
  {
    ledger: z.strictObject({ file: z.string().min(1), currency: z.string().regex(/^[A-Z]{3}$/, 'an ISO 4217 code such as EUR') }, { error: (issue) => (issue.input === undefined ? NO_LEDGER : undefined) }),
  },
  { error: (issue) => (issue.input === undefined ? NO_LEDGER : undefined) },
);
export type PaymentsHostOptions = z.output<typeof paymentsHostOptionsSchema>;

/** The registry's entry: a SQLite ledger named by the instance's host options (opened per call, nothing to close). */
export const paymentsPlugin = definePlugin({
  definition: paymentsCapability,
  hostOptions: paymentsHostOptionsSchema,
  create: (scope, context, options) =>
    createPayments(scope, { ledger: createSqliteLedger({ file: context.resolvePath(context.hostOptions.ledger.file), currency: context.hostOptions.ledger.currency }) }, options),
});
