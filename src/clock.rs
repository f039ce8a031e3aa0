//! The process's one monotonic origin: native breaker and cache clocks and attempt tokens
//! all count from it, so their times are comparable.

use std::sync::OnceLock;
use std::time::Instant;

/// Set on first use (any module), then fixed for the life of the process.
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since the origin. Saturates (far beyond any uptime) instead of truncating.
#[inline]
pub fn now_ns() -> u64 {
    u64::try_from(origin().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Seconds since the origin.
#[inline]
pub fn now_secs() -> f64 {
    origin().elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_origin_never_goes_back() {
        let o = origin();
        let (a, s) = (now_ns(), now_secs());
        let b = now_ns();
        assert_eq!(origin(), o);
        assert!(a <= b);
        assert!((s * 1e9) as u64 <= b + 1_000);
    }
}
