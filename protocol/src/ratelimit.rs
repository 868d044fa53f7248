//! A token bucket, with time passed in.

/// Allows `rate` events per second on average and bursts of `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket at time `now_ms`.
    pub fn new(rate_per_sec: f64, burst: f64, now_ms: u64) -> Self {
        Self {
            rate: rate_per_sec.max(0.0),
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            last_ms: now_ms,
        }
    }

    /// Refills up to `now_ms` and returns the tokens available (negative after a
    /// [`Self::charge`] beyond the balance).
    pub fn balance(&mut self, now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens
    }

    /// Takes `amount` tokens after the fact (e.g. fuel a call turned out to use); the
    /// balance may go negative, and refills from there.
    pub fn charge(&mut self, amount: f64) {
        if amount.is_finite() && amount > 0.0 {
            self.tokens -= amount;
        }
    }

    /// Takes one token at `now_ms`; returns false (and takes nothing) when empty.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        if self.balance(now_ms) >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_rate_and_refills() {
        let mut b = TokenBucket::new(10.0, 3.0, 0);
        assert!(b.try_take(0) && b.try_take(0) && b.try_take(0));
        assert!(!b.try_take(0));
        assert!(!b.try_take(50));
        assert!(b.try_take(100));
        assert!(!b.try_take(100));
        // Time going backwards never adds tokens.
        assert!(!b.try_take(10));
    }

    #[test]
    fn charges_after_the_fact_and_refills_from_debt() {
        let mut b = TokenBucket::new(100.0, 100.0, 0);
        b.charge(250.0);
        assert!((b.balance(0) + 150.0).abs() < 1e-9);
        assert!(
            b.balance(1000) < 0.0,
            "one second refills 100 of the 150 owed"
        );
        assert!(b.balance(2000) > 0.0);
        assert!(
            (b.balance(10_000) - 100.0).abs() < 1e-9,
            "never above the burst"
        );
    }
}
