/**
 * A token bucket: `capacity` tokens, refilled continuously at `perSecond`. `take()` spends one
 * token or reports that none is left. Time comes from an injected clock (tests).
 */
export class TokenBucket {
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly perSecond: number,
    private readonly capacity: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(perSecond > 0) || !(capacity >= 1)) throw new RangeError('TokenBucket needs perSecond > 0 and capacity >= 1');
    this.tokens = capacity;
    this.refilledAt = now();
  }

  take(): boolean {
    const at = this.now();
    this.tokens = Math.min(this.capacity, this.tokens + ((at - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = at;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
