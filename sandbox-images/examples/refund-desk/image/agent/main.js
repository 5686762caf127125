// refund-desk — look up an order and refund it, within the refund policy.
//
// Capabilities (see manifest.json):
//   caps.orders    sql, read-only: query({ sql, params? }) -> { columns, rows, truncated }
//                  (each row is an array of cells in the order of `columns`)
//   caps.payments  payments:       refund({ orderId, amountCents, reason })   (financial)
import { decideRefund, rowsAsObjects } from './policy.js';

export default async function main(input, caps) {
  const { orderId, reason } = input;
  if (typeof orderId !== 'string' || typeof reason !== 'string' || reason.trim() === '') {
    throw new Error('input needs "orderId" and a non-empty "reason"');
  }

  // 1. Look the order up (parameters are bound, never concatenated into the SQL).
  const result = await caps.orders.query({
    sql: 'SELECT id, customer_email, status, amount_cents, refunded_cents FROM orders WHERE id = ?',
    params: [orderId],
  });
  const [order] = rowsAsObjects(result);
  if (order === undefined) {
    return { refunded: false, orderId, why: 'order not found' };
  }

  // 2. Decide how much to refund (pure policy, no side effects).
  const decision = decideRefund(order, input.amountCents);
  if (!decision.ok) {
    console.log(`no refund for ${orderId}: ${decision.why}`);
    return { refunded: false, orderId, why: decision.why };
  }

  // 3. Refund. This moves money; the host routes it to a person for approval.
  const euros = (decision.amountCents / 100).toFixed(2);
  const receipt = await caps.payments.refund(
    { orderId: order.id, amountCents: decision.amountCents, reason },
    { reason: `Refund EUR ${euros} on order ${order.id} (${order.customer_email}): ${reason}` },
  );
  return { refunded: true, orderId: order.id, amountCents: decision.amountCents, receipt };
}
