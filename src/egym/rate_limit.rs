//! The client side of EGYM's rate limit: a token bucket per API key, capacity 60, refilled at 6
//! per second; a request over it is answered 429 with no `Retry-After`, and answers carry
//! `X-RateLimit-Remaining`.
//!
//! The client keeps its own bucket with the configured rate and burst, and takes a token before
//! every request. Two things keep it in step with EGYM's bucket, which other boxes sharing the
//! key also draw from:
//! - `X-RateLimit-Remaining`: the client never believes it has more tokens than EGYM says remain;
//! - a 429: the bucket is emptied and the refill rate halved; each accepted request then wins a
//!   little of the rate back, up to the configured rate (additive increase, multiplicative
//!   decrease, as TCP does).

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::timer::{self, Instant};

/// The refill rate never drops below this share of the configured rate.
const MIN_RATE_SHARE: f64 = 0.05;
/// Each accepted request wins back this share of the configured rate.
const RECOVERY_SHARE: f64 = 0.02;
/// The client refills a little slower than configured, so that its requests, arriving with
/// varying network delay, never find EGYM's identical bucket a fraction of a token short.
const SAFETY_MARGIN: f64 = 0.98;

/// A token bucket (pure; time passed in).
#[derive(Debug)]
pub struct TokenBucket {
    configured_rate: f64,
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_second: f64, burst: u32, now: Instant) -> Self {
        let rate = rate_per_second * SAFETY_MARGIN;
        TokenBucket {
            configured_rate: rate,
            rate,
            capacity: f64::from(burst),
            tokens: f64::from(burst),
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.time_until(1.0))
        }
    }

    /// How long until `tokens` are there, as of the last refill.
    fn time_until(&self, tokens: f64) -> Duration {
        Duration::from_secs_f64((tokens - self.tokens).max(0.0) / self.rate)
    }

    /// How long a request that lets another go first waits before it looks again: until the
    /// token after the next one is there.
    fn time_until_second(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.time_until(2.0).max(Duration::from_millis(1))
    }

    /// Whether at least half the bucket is there: a request that is only nice to have (a
    /// member's first name for the screen) is made only then.
    pub fn has_spare(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.capacity / 2.0
    }

    /// Learns from an answer: its status and `X-RateLimit-Remaining`, if present.
    pub fn observe(&mut self, status: u16, remaining: Option<u32>, now: Instant) {
        self.refill(now);
        if let Some(remaining) = remaining {
            self.tokens = self.tokens.min(f64::from(remaining));
        }
        if status == 429 {
            self.tokens = 0.0;
            self.rate = (self.rate / 2.0).max(self.configured_rate * MIN_RATE_SHARE);
        } else if (200..300).contains(&status) {
            self.rate =
                (self.rate + self.configured_rate * RECOVERY_SHARE).min(self.configured_rate);
        }
    }

    /// The refill rate now, in tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// Who a request is for, when the bucket is short.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Priority {
    /// Events that have waited already: a backlog, retries, automatic check-outs.
    #[default]
    Backlog,
    /// A member who just tapped: takes the next token before any backlog request.
    Member,
}

/// The bucket shared by all requests of one client.
#[derive(Debug)]
pub struct RateLimiter {
    bucket: Mutex<TokenBucket>,
    /// Requests of [`Priority::Member`] waiting for a token.
    members_waiting: AtomicUsize,
}

/// Counts one member's request as waiting while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RateLimiter {
    pub fn new(rate_per_second: f64, burst: u32) -> Self {
        RateLimiter {
            bucket: Mutex::new(TokenBucket::new(rate_per_second, burst, Instant::now())),
            members_waiting: AtomicUsize::new(0),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, TokenBucket> {
        // A panic aborts the process (panic = "abort"), so the lock is never poisoned.
        self.bucket.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a token. While a member's request waits, backlog requests let it go first:
    /// a tap at the door is not queued behind a draining backlog's requests already in flight.
    pub async fn acquire(&self, priority: Priority) {
        let _waiting = (priority == Priority::Member).then(|| Waiting::new(&self.members_waiting));
        loop {
            let wait = {
                let mut bucket = self.bucket();
                let now = Instant::now();
                if priority == Priority::Backlog && self.members_waiting.load(Ordering::SeqCst) > 0
                {
                    bucket.time_until_second(now)
                } else {
                    match bucket.take(now) {
                        Ok(()) => return,
                        Err(wait) => wait,
                    }
                }
            };
            timer::sleep(wait).await;
        }
    }

    pub fn observe(&self, status: u16, remaining: Option<u32>) {
        self.bucket().observe(status, remaining, Instant::now());
    }

    /// See [`TokenBucket::has_spare`].
    pub fn has_spare(&self) -> bool {
        self.bucket().has_spare(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(6.0 / SAFETY_MARGIN, 60, start);
        for _ in 0..60 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        let wait = bucket.take(start).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0 / 6.0).abs() < 1e-9, "{wait:?}");
        let later = start + Duration::from_secs(1);
        for _ in 0..6 {
            assert_eq!(bucket.take(later), Ok(()));
        }
        assert!(bucket.take(later).is_err());
        // It never holds more than its capacity.
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..60 {
            assert_eq!(bucket.take(much_later), Ok(()));
        }
        assert!(bucket.take(much_later).is_err());
    }

    #[test]
    fn only_a_half_full_bucket_has_spare_tokens() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(6.0 / SAFETY_MARGIN, 60, start);
        assert!(bucket.has_spare(start));
        for _ in 0..30 {
            bucket.take(start).unwrap();
        }
        assert!(bucket.has_spare(start));
        bucket.take(start).unwrap();
        assert!(!bucket.has_spare(start));
        // A backlog draining keeps it below half; given time, it fills again.
        assert!(bucket.has_spare(start + Duration::from_secs(1)));
    }

    #[test]
    fn egyms_remaining_count_caps_the_tokens() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 60, start);
        bucket.observe(204, Some(2), start);
        assert_eq!(bucket.take(start), Ok(()));
        assert_eq!(bucket.take(start), Ok(()));
        assert!(bucket.take(start).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_members_request_takes_the_next_token_before_the_backlog() {
        let limiter = std::sync::Arc::new(RateLimiter::new(10.0, 1));
        limiter.acquire(Priority::Backlog).await;
        let (order, mut taken) = tokio::sync::mpsc::unbounded_channel();
        // Backlog requests waiting first, as a draining backlog's requests in flight do.
        for n in 0..3 {
            let (limiter, order) = (limiter.clone(), order.clone());
            tokio::spawn(async move {
                limiter.acquire(Priority::Backlog).await;
                order.send(format!("backlog {n}")).unwrap();
            });
        }
        tokio::task::yield_now().await;
        let (limiter2, order2) = (limiter.clone(), order.clone());
        tokio::spawn(async move {
            limiter2.acquire(Priority::Member).await;
            order2.send("member".to_string()).unwrap();
        });
        let first = taken.recv().await.unwrap();
        assert_eq!(first, "member");
        let started = Instant::now();
        for _ in 0..3 {
            assert!(taken.recv().await.unwrap().starts_with("backlog"));
        }
        // The backlog still gets the rate: three more tokens in about 0.3 s.
        let took = started.elapsed().as_secs_f64();
        assert!((0.25..0.45).contains(&took), "{took}");
        assert_eq!(limiter.members_waiting.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_429_halves_the_rate_and_successes_win_it_back() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 60, start);
        let configured = bucket.rate();
        bucket.observe(429, Some(0), start);
        assert!(bucket.take(start).is_err());
        assert!((bucket.rate() - configured / 2.0).abs() < 1e-9);
        for _ in 0..10 {
            bucket.observe(429, None, start);
        }
        assert!((bucket.rate() - configured * MIN_RATE_SHARE).abs() < 1e-9);
        for _ in 0..100 {
            bucket.observe(204, None, start);
        }
        assert!((bucket.rate() - configured).abs() < 1e-9);
    }
}
