//! 128-bit request keys: a keyed SipHash-1-3 over a canonical, type-tagged encoding.
//!
//! The hash is keyed with a per-process random secret (or one the caller supplies so that
//! a fleet can share keys), so nobody outside the process can search for colliding prompts.
//! SipHash is a PRF; with a 128-bit output the chance that any two of `n` distinct requests
//! share a key is about `n^2 / 2^129` (1e12 distinct requests: about 1.5e-15).
//!
//! The encoding is injective: every value starts with a type tag, and every variable-length
//! item is preceded by its length, so `"1"` and `1`, `[1, 2]` and `[[1], 2]` never meet.

use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// A request key.
pub type Key = u128;

/// Type tags of the canonical encoding. Values are part of the key format: never reuse one.
pub mod tag {
    pub const NONE: u8 = 0;
    pub const FALSE: u8 = 1;
    pub const TRUE: u8 = 2;
    pub const INT: u8 = 3;
    pub const BIG_INT: u8 = 4;
    pub const FLOAT: u8 = 5;
    pub const STR: u8 = 6;
    /// A str holding lone surrogates, encoded with `surrogatepass`.
    pub const STR_SURROGATES: u8 = 7;
    pub const BYTES: u8 = 8;
    pub const BYTEARRAY: u8 = 9;
    pub const LIST: u8 = 10;
    pub const TUPLE: u8 = 11;
    /// A dict whose keys are all str: pairs in key byte order.
    pub const DICT_STR: u8 = 12;
    /// Any other dict: sorted digests of its pairs.
    pub const DICT_ANY: u8 = 13;
    pub const SET: u8 = 14;
    pub const FROZENSET: u8 = 15;
    pub const ROUTE: u8 = 32;
    pub const PROMPT: u8 = 33;
    pub const KWARGS: u8 = 34;
    pub const ROUTE_DEF: u8 = 35;
    pub const PAIR: u8 = 36;
    pub const ELEMENT: u8 = 37;
}

/// The secret the key hash is keyed with.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    k0: u64,
    k1: u64,
}

impl Secret {
    /// A fresh secret from the OS's random source.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        if getrandom::fill(&mut b).is_err() {
            // No OS entropy (exotic sandboxes): fall back to std's per-process random
            // hasher keys, which are still unknown outside the process.
            use std::collections::hash_map::RandomState;
            use std::hash::BuildHasher;
            let s = RandomState::new();
            b[..8].copy_from_slice(&s.hash_one(0x5eed_u64).to_le_bytes());
            b[8..].copy_from_slice(&s.hash_one(0xfeed_u64).to_le_bytes());
        }
        Self::from_bytes(b)
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        let mut lo = [0u8; 8];
        let mut hi = [0u8; 8];
        lo.copy_from_slice(&b[..8]);
        hi.copy_from_slice(&b[8..]);
        Secret {
            k0: u64::from_le_bytes(lo),
            k1: u64::from_le_bytes(hi),
        }
    }
}

impl std::fmt::Debug for Secret {
    // Never print the secret itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// Small writes are gathered in a buffer before they reach SipHash: a key is mostly tags,
/// lengths and short values, and one 64-byte write costs far less than a dozen tiny ones.
/// SipHash is a byte stream, so the buffering does not change any key.
const BUF: usize = 64;

/// Streams the canonical encoding of one value into the keyed hash.
#[derive(Clone)]
pub struct KeyBuilder {
    h: SipHasher13,
    buf: [u8; BUF],
    n: usize,
}

impl KeyBuilder {
    pub fn new(secret: &Secret) -> Self {
        KeyBuilder {
            h: SipHasher13::new_with_keys(secret.k0, secret.k1),
            buf: [0; BUF],
            n: 0,
        }
    }

    #[inline]
    fn write(&mut self, data: &[u8]) {
        if self.n + data.len() <= BUF {
            self.buf[self.n..self.n + data.len()].copy_from_slice(data);
            self.n += data.len();
            return;
        }
        self.flush();
        if data.len() >= BUF {
            self.h.write(data);
        } else {
            self.buf[..data.len()].copy_from_slice(data);
            self.n = data.len();
        }
    }

    fn flush(&mut self) {
        if self.n > 0 {
            self.h.write(&self.buf[..self.n]);
            self.n = 0;
        }
    }

    #[inline]
    pub fn tag(&mut self, t: u8) {
        self.write(&[t]);
    }

    #[inline]
    pub fn len(&mut self, n: usize) {
        self.write(&(n as u64).to_le_bytes());
    }

    /// Bytes with their length first, so adjacent items cannot run into each other.
    #[inline]
    pub fn sized(&mut self, t: u8, data: &[u8]) {
        self.tag(t);
        self.len(data.len());
        self.write(data);
    }

    pub fn none(&mut self) {
        self.tag(tag::NONE);
    }

    pub fn bool(&mut self, v: bool) {
        self.tag(if v { tag::TRUE } else { tag::FALSE });
    }

    pub fn int(&mut self, v: i64) {
        self.tag(tag::INT);
        self.write(&v.to_le_bytes());
    }

    /// An int outside i64, as its decimal text.
    pub fn big_int(&mut self, decimal: &[u8]) {
        self.sized(tag::BIG_INT, decimal);
    }

    pub fn float(&mut self, v: f64) {
        self.tag(tag::FLOAT);
        self.write(&canonical_float_bits(v).to_le_bytes());
    }

    pub fn str_utf8(&mut self, utf8: &[u8]) {
        self.sized(tag::STR, utf8);
    }

    pub fn str_surrogates(&mut self, surrogatepass: &[u8]) {
        self.sized(tag::STR_SURROGATES, surrogatepass);
    }

    pub fn digest(&mut self, d: Key) {
        self.write(&d.to_le_bytes());
    }

    /// Writes raw bytes in the middle of a prompt (streamed hashing of huge strings).
    pub fn raw(&mut self, data: &[u8]) {
        self.write(data);
    }

    pub fn finish(&self) -> Key {
        let mut h = self.h;
        h.write(&self.buf[..self.n]);
        h.finish128().as_u128()
    }
}

/// 0.0 and -0.0 are the same request; every NaN is the same NaN.
pub fn canonical_float_bits(v: f64) -> u64 {
    if v.is_nan() {
        0x7ff8_0000_0000_0000
    } else if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

/// Feeds pair (or element) digests in sorted order, so the container's order does not matter.
pub fn write_unordered(b: &mut KeyBuilder, t: u8, digests: &mut [Key]) {
    digests.sort_unstable();
    b.tag(t);
    b.len(digests.len());
    for d in digests.iter() {
        b.digest(*d);
    }
}

/// Starts the key of one request: the route's digest, then the prompt follows. Call
/// `kwargs()` between the prompt and the kwargs.
pub fn begin_request(secret: &Secret, route: Key) -> KeyBuilder {
    let mut b = KeyBuilder::new(secret);
    b.tag(tag::ROUTE);
    b.digest(route);
    b.tag(tag::PROMPT);
    b
}

impl KeyBuilder {
    /// Separates the prompt from the kwargs.
    pub fn kwargs(&mut self) {
        self.tag(tag::KWARGS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Secret {
        Secret::from_bytes([7; 16])
    }

    fn key_of(f: impl FnOnce(&mut KeyBuilder)) -> Key {
        let mut b = KeyBuilder::new(&s());
        f(&mut b);
        b.finish()
    }

    #[test]
    fn type_tags_separate_equal_looking_values() {
        let a = key_of(|b| b.str_utf8(b"1"));
        let c = key_of(|b| b.int(1));
        let d = key_of(|b| b.float(1.0));
        let e = key_of(|b| b.bool(true));
        let f = key_of(|b| b.sized(tag::BYTES, b"1"));
        let all = [a, c, d, e, f];
        for i in 0..all.len() {
            for j in 0..i {
                assert_ne!(all[i], all[j]);
            }
        }
    }

    #[test]
    fn lengths_prevent_concatenation_collisions() {
        let a = key_of(|b| {
            b.str_utf8(b"ab");
            b.str_utf8(b"c");
        });
        let c = key_of(|b| {
            b.str_utf8(b"a");
            b.str_utf8(b"bc");
        });
        assert_ne!(a, c);
    }

    #[test]
    fn floats_are_canonical() {
        assert_eq!(key_of(|b| b.float(0.0)), key_of(|b| b.float(-0.0)));
        assert_eq!(
            key_of(|b| b.float(f64::NAN)),
            key_of(|b| b.float(-f64::NAN))
        );
        assert_ne!(key_of(|b| b.float(0.1)), key_of(|b| b.float(0.2)));
    }

    #[test]
    fn unordered_containers_ignore_order() {
        let mut x = [3u128, 1, 2];
        let mut y = [2u128, 3, 1];
        let a = key_of(|b| write_unordered(b, tag::DICT_ANY, &mut x));
        let c = key_of(|b| write_unordered(b, tag::DICT_ANY, &mut y));
        assert_eq!(a, c);
        let mut z = [2u128, 3, 4];
        assert_ne!(a, key_of(|b| write_unordered(b, tag::DICT_ANY, &mut z)));
    }

    fn request_key(secret: &Secret, route: Key, prompt: &[u8]) -> Key {
        let mut b = begin_request(secret, route);
        b.str_utf8(prompt);
        b.kwargs();
        b.none();
        b.finish()
    }

    #[test]
    fn secret_changes_every_key() {
        let a = request_key(&s(), 1, b"hi");
        let other = Secret::from_bytes([8; 16]);
        let c = request_key(&other, 1, b"hi");
        assert_ne!(a, c);
        assert_eq!(a, request_key(&s(), 1, b"hi"));
    }

    #[test]
    fn route_is_part_of_the_key() {
        let a = request_key(&s(), 1, b"hi");
        let c = request_key(&s(), 2, b"hi");
        assert_ne!(a, c);
    }

    #[test]
    fn buffering_does_not_change_keys() {
        let secret = s();
        let big = vec![7u8; 1000];
        let mut b = KeyBuilder::new(&secret);
        b.tag(1);
        b.raw(&big);
        b.len(3);
        b.raw(&[1, 2, 3]);
        let mut plain = SipHasher13::new_with_keys(secret.k0, secret.k1);
        plain.write(&[1]);
        plain.write(&big);
        plain.write(&3u64.to_le_bytes());
        plain.write(&[1, 2, 3]);
        assert_eq!(b.finish(), plain.finish128().as_u128());
    }

    #[test]
    fn random_secrets_differ() {
        assert_ne!(Secret::random(), Secret::random());
        assert_eq!(format!("{:?}", Secret::random()), "Secret(<hidden>)");
    }
}
