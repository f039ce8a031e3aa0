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

/// Nanoseconds since the origin from the kernel's coarse monotonic clock on Linux (one
/// tick: a few ms, read for a few ns from the vDSO, where the precise clock costs tens of
/// ns on some VMs); `now_ns` elsewhere. For rate limits, whose windows are seconds: a
/// bound that holds per tick is the bound. Never compare it with `now_ns` readings.
#[inline]
pub fn coarse_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        coarse_since(coarse_origin())
    }
    #[cfg(not(target_os = "linux"))]
    {
        now_ns()
    }
}

#[cfg(target_os = "linux")]
fn coarse_raw() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        return 0; // never on Linux >= 2.6.32; 0 only makes the limiter stricter
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(target_os = "linux")]
fn coarse_origin() -> u64 {
    static ORIGIN: OnceLock<u64> = OnceLock::new();
    *ORIGIN.get_or_init(coarse_raw)
}

#[cfg(target_os = "linux")]
#[inline]
fn coarse_since(origin: u64) -> u64 {
    coarse_raw().saturating_sub(origin)
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

    #[test]
    fn the_coarse_clock_never_goes_back_and_moves() {
        let a = coarse_ns();
        let mut b = a;
        for _ in 0..10_000_000 {
            b = coarse_ns();
            if b > a {
                break;
            }
        }
        assert!(b > a, "the coarse clock did not move");
        assert!(coarse_ns() >= b);
    }
}
