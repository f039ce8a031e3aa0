//! The attempt token `ModelCore.begin` hands out: the breaker's permit and the attempt's
//! start time in one non-negative i64, so Python holds a plain int and nothing per attempt
//! is stored natively.
//!
//! Layout (low to high bits):
//! - 2 bits: the permit (1 normal, 2 trial; 0 is never encoded: a rejected attempt's token
//!   is 0 itself)
//! - 61 bits: the start time in ns since the process clock's origin, wrapping at 2^61
//!   (73 years of uptime), which keeps the sign bit clear

use crate::breaker::Permit;

const PERMIT_BITS: u32 = 2;
const PERMIT_MASK: u64 = (1 << PERMIT_BITS) - 1;
/// Start times keep their low 61 bits: 2 permit bits plus 61 leave the sign bit clear.
pub const TIME_MASK: u64 = (1 << (63 - PERMIT_BITS)) - 1;

// The same codes as `BreakerCore.acquire()` returns, so a token's low bits read as one.
const NORMAL: u64 = 1;
const TRIAL: u64 = 2;

/// Why a token cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Below zero: never produced by `encode`.
    Negative,
    /// Permit bits 0: a rejected attempt (token 0), which has no outcome to report.
    Rejected,
    /// Permit bits naming no permit (3).
    BadPermit(u8),
}

/// The token of an admitted attempt started at `start_ns`; 0 for a rejected one (it has no
/// start worth keeping, and 0 is falsy for the Python caller).
#[inline]
pub fn encode(permit: Permit, start_ns: u64) -> i64 {
    let p = match permit {
        Permit::Rejected => return 0,
        Permit::Normal => NORMAL,
        Permit::Trial => TRIAL,
    };
    // Fits: the masked time shifted by 2 uses bits 2..=62, never the sign bit.
    (((start_ns & TIME_MASK) << PERMIT_BITS) | p) as i64
}

/// The permit (never `Rejected`) and the start time (wrapped to 61 bits) of `token`.
#[inline]
pub fn decode(token: i64) -> Result<(Permit, u64), TokenError> {
    let t = u64::try_from(token).map_err(|_| TokenError::Negative)?;
    let permit = match t & PERMIT_MASK {
        NORMAL => Permit::Normal,
        TRIAL => Permit::Trial,
        0 => return Err(TokenError::Rejected),
        // The mask leaves 3 as the only other value.
        bits => return Err(TokenError::BadPermit(bits as u8)),
    };
    Ok((permit, t >> PERMIT_BITS))
}

/// Nanoseconds from `start_ns` (a decoded start) to `now_ns`, modulo the 61-bit wrap, so an
/// attempt spanning the wrap still reads its true duration.
#[inline]
pub fn elapsed_ns(start_ns: u64, now_ns: u64) -> u64 {
    now_ns.wrapping_sub(start_ns) & TIME_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for permit in [Permit::Normal, Permit::Trial] {
            for start in [0, 1, 12_345_678_901, TIME_MASK - 1, TIME_MASK] {
                let t = encode(permit, start);
                assert!(t > 0, "{permit:?} {start}: {t}");
                assert_eq!(decode(t), Ok((permit, start)));
            }
        }
    }

    #[test]
    fn start_times_wrap_at_2_pow_61() {
        let wrap = 1u64 << 61;
        assert_eq!(TIME_MASK, wrap - 1);
        for start in [wrap, wrap + 7, u64::MAX] {
            let t = encode(Permit::Trial, start);
            assert!(t > 0, "the sign bit stays clear: {start} -> {t}");
            assert_eq!(decode(t), Ok((Permit::Trial, start & TIME_MASK)));
        }
        // An attempt started just before the wrap and finished just after it.
        let (_, start) = decode(encode(Permit::Normal, wrap - 3)).expect("valid");
        let now = wrap + 4;
        assert_eq!(elapsed_ns(start, now & TIME_MASK), 7);
        assert_eq!(elapsed_ns(start, now), 7);
        assert_eq!(elapsed_ns(10, 25), 15);
    }

    #[test]
    fn a_rejected_attempt_is_token_0() {
        assert_eq!(encode(Permit::Rejected, 123_456), 0);
        assert_eq!(decode(0), Err(TokenError::Rejected));
        // Permit bits 0 with a start time: still no permit.
        assert_eq!(decode(4 << 2), Err(TokenError::Rejected));
    }

    #[test]
    fn negative_tokens_are_refused() {
        for t in [-1, -2, -4, i64::MIN] {
            assert_eq!(decode(t), Err(TokenError::Negative), "{t}");
        }
    }

    #[test]
    fn permit_bits_3_are_refused() {
        assert_eq!(decode(3), Err(TokenError::BadPermit(3)));
        assert_eq!(decode(i64::MAX), Err(TokenError::BadPermit(3)));
        assert_eq!(decode((99 << 2) | 3), Err(TokenError::BadPermit(3)));
    }
}
