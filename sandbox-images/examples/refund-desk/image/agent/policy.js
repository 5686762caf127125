// The refund policy, as a pure function so it is easy to read and to test, and a small helper
// for SQL results.

const REFUNDABLE = new Set(['paid', 'shipped', 'delivered']);

/**
 * @param {{ status: string, amount_cents: number, refunded_cents: number }} order
 * @param {number | undefined} requestedCents  partial amount, or undefined for everything left
 * @returns {{ ok: true, amountCents: number } | { ok: false, why: string }}
 */
export function decideRefund(order, requestedCents) {
  if (!REFUNDABLE.has(order.status)) {
    return { ok: false, why: `order status is "${order.status}"` };
  }
  const remaining = order.amount_cents - order.refunded_cents;
  if (remaining <= 0) {
    return { ok: false, why: 'order is already fully refunded' };
  }
  if (requestedCents === undefined) {
    return { ok: true, amountCents: remaining };
  }
  if (!Number.isInteger(requestedCents) || requestedCents <= 0) {
    return { ok: false, why: 'amountCents must be a positive whole number of cents' };
  }
  if (requestedCents > remaining) {
    return { ok: false, why: `only ${remaining} cents are left to refund` };
  }
  return { ok: true, amountCents: requestedCents };
}

/** `{ columns, rows }` from sql.query, as one object per row: `{ id: ..., status: ... }`. */
export function rowsAsObjects({ columns, rows }) {
  return rows.map((row) => Object.fromEntries(columns.map((column, i) => [column, row[i]])));
}
