/**
 * Per-method budgets of a capability instance: a total number of calls, a rate (token bucket),
 * and bytes moved. Exceeding any of them fails the call with `BUDGET_EXCEEDED` before it acts.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';

export const budgetSchema = z.strictObject({
  /** Total calls allowed over the life of the instance. */
  maxCalls: z.number().int().nonnegative().optional(),
  /** Sustained calls per second (burst of the same size). */
  perSecond: z.number().positive().optional(),
  /** Total bytes (argument + result JSON, or as the method counts them). */
  maxBytes: z.number().int().nonnegative().optional(),
});
export type Budget = z.infer<typeof budgetSchema>;

export class BudgetMeter {
  private calls = 0;
  private bytes = 0;
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly budget: Budget,
    private readonly label: string,
    private readonly now: () => number,
  ) {
    // Bucket capacity is at least one call, so a rate below 1/s (e.g. 0.5) still allows a call
    // every 1/rate seconds instead of never.
    this.tokens = this.capacity();
    this.refilledAt = now();
  }

  /** Throw BUDGET_EXCEEDED if one more call with these argument bytes would exceed the budget. */
  check(argBytes: number): void {
    const { maxCalls, perSecond, maxBytes } = this.budget;
    if (maxCalls !== undefined && this.calls + 1 > maxCalls) {
      throw new ContainedError('BUDGET_EXCEEDED', `${this.label}: call budget of ${maxCalls} used up`, {
        data: { budget: 'maxCalls', limit: maxCalls },
      });
    }
    if (maxBytes !== undefined && this.bytes + argBytes > maxBytes) {
      throw new ContainedError('BUDGET_EXCEEDED', `${this.label}: byte budget of ${maxBytes} used up`, {
        data: { budget: 'maxBytes', limit: maxBytes },
      });
    }
    if (perSecond !== undefined) {
      const t = this.now();
      // A clock that goes backwards must not mint tokens.
      const elapsed = Math.max(0, t - this.refilledAt);
      this.tokens = Math.min(this.capacity(), this.tokens + (elapsed / 1000) * perSecond);
      this.refilledAt = Math.max(this.refilledAt, t);
      if (this.tokens < 1) {
        throw new ContainedError('BUDGET_EXCEEDED', `${this.label}: rate budget of ${perSecond}/s exceeded`, {
          data: { budget: 'perSecond', limit: perSecond },
        });
      }
    }
  }

  /** Take one call and its argument bytes; call `check` first. */
  take(argBytes: number): void {
    if (this.budget.perSecond !== undefined) this.tokens -= 1;
    this.calls += 1;
    this.bytes += argBytes;
  }

  /** Charge result bytes after the fact; the next call fails if this went over. */
  charge(bytes: number): void {
    this.bytes += bytes;
  }

  private capacity(): number {
    return Math.max(1, this.budget.perSecond ?? 0);
  }

  usage(): { calls: number; bytes: number } {
    return { calls: this.calls, bytes: this.bytes };
  }
}
