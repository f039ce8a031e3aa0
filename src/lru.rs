//! One shard of the response cache: a true LRU over a slab-backed doubly linked list.
//!
//! Generic over the value so the Rust tests run without Python. Values that leave the
//! shard are handed back to the caller (`dropped`), never dropped here: for Python
//! objects a drop can run `__del__`, and no Python code may run while the shard's lock
//! is held.
//!
//! An entry is live for one TTL from when it was stored, on the caller's clock. A clock
//! that reads earlier than an entry's store time went back: the entry's real age is
//! unknown, so it counts as expired (not re-anchored to now, which would serve an answer
//! of unknown age for one more full TTL). A jump back thus costs a recomputation of the
//! entries stored after the time jumped to, never an answer served for TTL + jump (after a
//! jump of years: until eviction): the one-TTL bound the breakers keep.

use crate::key::Key;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const NIL: u32 = u32::MAX;

/// The key split in two words: 8-byte alignment keeps map buckets at 24 bytes, not 32.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct K(u64, u64);

impl From<Key> for K {
    fn from(k: Key) -> Self {
        K((k >> 64) as u64, k as u64)
    }
}

impl From<K> for Key {
    fn from(k: K) -> Self {
        ((k.0 as u128) << 64) | k.1 as u128
    }
}

/// Keys are already uniform keyed-hash output: the map uses their low word as is.
#[derive(Default)]
pub struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached through `K`'s derived Hash, which writes two u64s.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

struct Node<V> {
    key: K,
    value: Option<V>,
    prev: u32,
    next: u32,
    size: u64,
    stored_at: f64,
}

/// Outcome of a lookup.
pub enum Lookup<R, V> {
    Hit(R),
    Miss,
    /// The entry had expired: it is removed and its value handed back for dropping.
    Expired(V),
}

pub struct Lru<V> {
    map: HashMap<K, u32, BuildHasherDefault<PassThrough>>,
    nodes: Vec<Node<V>>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    bytes: u64,
    max_entries: usize,
    max_bytes: u64,
    /// Seconds an entry lives; infinite: no TTL (and the clock is never consulted).
    ttl: f64,
}

/// What an insert did, for the stats.
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct InsertOutcome {
    pub inserted: bool,
    pub evicted: u64,
}

impl<V> Lru<V> {
    pub fn new(max_entries: usize, max_bytes: u64, ttl: f64) -> Self {
        Lru {
            map: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            bytes: 0,
            max_entries: max_entries.max(1),
            max_bytes,
            ttl,
        }
    }

    /// Whether an entry stored at `stored_at` is dead at `now`: a TTL has passed, or the
    /// clock reads earlier than the store (it went back; see the module comment).
    fn expired(&self, stored_at: f64, now: f64) -> bool {
        self.ttl.is_finite() && (now >= stored_at + self.ttl || now < stored_at)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        if old == NIL {
            self.tail = i;
        } else {
            self.nodes[old as usize].prev = i;
        }
        self.head = i;
    }

    fn remove_index(&mut self, i: u32) -> Option<V> {
        self.unlink(i);
        let n = &mut self.nodes[i as usize];
        self.map.remove(&n.key);
        self.bytes -= n.size;
        n.size = 0;
        self.free.push(i);
        n.value.take()
    }

    /// Looks a key up; a hit becomes the most recent entry.
    pub fn get<R>(&mut self, key: Key, now: f64, read: impl FnOnce(&V) -> R) -> Lookup<R, V> {
        let Some(&i) = self.map.get(&K::from(key)) else {
            return Lookup::Miss;
        };
        if self.expired(self.nodes[i as usize].stored_at, now) {
            return match self.remove_index(i) {
                Some(v) => Lookup::Expired(v),
                None => Lookup::Miss,
            };
        }
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
        match self.nodes[i as usize].value.as_ref() {
            Some(v) => Lookup::Hit(read(v)),
            None => Lookup::Miss,
        }
    }

    /// Whether a live entry exists, without touching recency.
    pub fn contains(&self, key: Key, now: f64) -> bool {
        match self.map.get(&K::from(key)) {
            Some(&i) => !self.expired(self.nodes[i as usize].stored_at, now),
            None => false,
        }
    }

    /// Stores a value as the most recent entry (stored at `now`), evicting from the least
    /// recent end. A value larger than the byte bound is not stored (and replaces nothing).
    pub fn insert(
        &mut self,
        key: Key,
        value: V,
        size: u64,
        now: f64,
        dropped: &mut Vec<V>,
    ) -> InsertOutcome {
        let k = K::from(key);
        if size > self.max_bytes {
            if let Some(&i) = self.map.get(&k) {
                dropped.extend(self.remove_index(i));
            }
            dropped.push(value);
            return InsertOutcome::default();
        }
        if let Some(&i) = self.map.get(&k) {
            let n = &mut self.nodes[i as usize];
            self.bytes = self.bytes - n.size + size;
            n.size = size;
            n.stored_at = now;
            dropped.extend(n.value.replace(value));
            if self.head != i {
                self.unlink(i);
                self.push_front(i);
            }
        } else {
            let node = Node {
                key: k,
                value: Some(value),
                prev: NIL,
                next: NIL,
                size,
                stored_at: now,
            };
            let i = match self.free.pop() {
                Some(i) => {
                    self.nodes[i as usize] = node;
                    i
                }
                None => {
                    if self.nodes.len() == self.nodes.capacity() {
                        // Grow by doubling, but never past the bound: a full cache holds no
                        // slack (Vec's own doubling would leave up to half of it unused).
                        let cap = self.nodes.capacity();
                        let target = (cap * 2).max(16).min(self.max_entries).max(cap + 1);
                        self.nodes.reserve_exact(target - cap);
                    }
                    self.nodes.push(node);
                    (self.nodes.len() - 1) as u32
                }
            };
            self.map.insert(k, i);
            self.bytes += size;
            self.push_front(i);
        }
        let mut evicted = 0;
        while self.map.len() > self.max_entries || self.bytes > self.max_bytes {
            let t = self.tail;
            if t == NIL || t == self.head {
                break;
            }
            dropped.extend(self.remove_index(t));
            evicted += 1;
        }
        InsertOutcome {
            inserted: true,
            evicted,
        }
    }

    pub fn remove(&mut self, key: Key) -> Option<V> {
        let i = *self.map.get(&K::from(key))?;
        self.remove_index(i)
    }

    /// Empties the shard, handing every value back.
    pub fn drain(&mut self, dropped: &mut Vec<V>) -> usize {
        let n = self.map.len();
        dropped.extend(self.nodes.drain(..).filter_map(|n| n.value));
        self.map = HashMap::default();
        self.free = Vec::new();
        self.head = NIL;
        self.tail = NIL;
        self.bytes = 0;
        n
    }

    /// Keys from most to least recent (for tests and debugging).
    pub fn keys_mru(&self) -> Vec<Key> {
        let mut out = Vec::with_capacity(self.map.len());
        let mut i = self.head;
        while i != NIL {
            let n = &self.nodes[i as usize];
            out.push(Key::from(n.key));
            i = n.next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(l: &mut Lru<u32>, k: Key, v: u32) -> InsertOutcome {
        let mut d = Vec::new();
        l.insert(k, v, 1, 0.0, &mut d)
    }

    fn get(l: &mut Lru<u32>, k: Key) -> Option<u32> {
        match l.get(k, 0.0, |v| *v) {
            Lookup::Hit(v) => Some(v),
            _ => None,
        }
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut l = Lru::new(2, u64::MAX, f64::INFINITY);
        put(&mut l, 1, 10);
        put(&mut l, 2, 20);
        assert_eq!(get(&mut l, 1), Some(10)); // 1 is now most recent
        let o = put(&mut l, 3, 30);
        assert_eq!(o.evicted, 1);
        assert_eq!(get(&mut l, 2), None);
        assert_eq!(get(&mut l, 1), Some(10));
        assert_eq!(get(&mut l, 3), Some(30));
        assert_eq!(l.keys_mru(), vec![3, 1]);
    }

    #[test]
    fn capacity_one() {
        let mut l = Lru::new(1, u64::MAX, f64::INFINITY);
        put(&mut l, 1, 10);
        put(&mut l, 2, 20);
        assert_eq!(l.len(), 1);
        assert_eq!(get(&mut l, 1), None);
        assert_eq!(get(&mut l, 2), Some(20));
    }

    #[test]
    fn replace_keeps_one_entry_and_refreshes() {
        let mut l = Lru::new(2, u64::MAX, f64::INFINITY);
        put(&mut l, 1, 10);
        put(&mut l, 2, 20);
        let mut d = Vec::new();
        l.insert(1, 11, 1, 0.0, &mut d);
        assert_eq!(d, vec![10]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.keys_mru(), vec![1, 2]);
    }

    #[test]
    fn ttl_expires_on_read() {
        let mut l = Lru::new(4, u64::MAX, 5.0);
        let mut d = Vec::new();
        l.insert(1, 10, 1, 0.0, &mut d);
        assert!(matches!(l.get(1, 4.9, |v| *v), Lookup::Hit(10)));
        assert!(matches!(l.get(1, 5.0, |v| *v), Lookup::Expired(10)));
        assert!(l.is_empty());
    }

    #[test]
    fn a_clock_gone_back_expires_what_was_stored_later() {
        let mut l = Lru::new(4, u64::MAX, 10.0);
        let mut d = Vec::new();
        l.insert(1, 10, 1, 1000.0, &mut d);
        l.insert(2, 20, 1, 0.0, &mut d);
        // The clock jumps back from 1000 to 0: entry 1's age is unknown, so it is dead;
        // entry 2, stored at 0, lives its one TTL.
        assert!(!l.contains(1, 0.0));
        assert!(l.contains(2, 0.0));
        assert!(matches!(l.get(1, 0.0, |v| *v), Lookup::Expired(10)));
        assert!(matches!(l.get(2, 9.9, |v| *v), Lookup::Hit(20)));
        assert!(matches!(l.get(2, 10.0, |v| *v), Lookup::Expired(20)));
        // Stored again after the jump: one TTL from then.
        l.insert(1, 11, 1, 0.5, &mut d);
        assert!(matches!(l.get(1, 10.4, |v| *v), Lookup::Hit(11)));
        assert!(!l.contains(1, 10.5));
    }

    #[test]
    fn without_a_ttl_nothing_expires() {
        let mut l = Lru::new(4, u64::MAX, f64::INFINITY);
        let mut d = Vec::new();
        l.insert(1, 10, 1, 1e12, &mut d);
        assert!(matches!(l.get(1, -1e12, |v| *v), Lookup::Hit(10)));
        assert!(matches!(l.get(1, f64::MAX, |v| *v), Lookup::Hit(10)));
    }

    #[test]
    fn byte_bound_evicts_and_rejects_oversized() {
        let mut l = Lru::new(100, 10, f64::INFINITY);
        let mut d = Vec::new();
        l.insert(1, 1, 4, 0.0, &mut d);
        l.insert(2, 2, 4, 0.0, &mut d);
        let o = l.insert(3, 3, 4, 0.0, &mut d);
        assert_eq!(o.evicted, 1);
        assert_eq!(l.bytes(), 8);
        let o = l.insert(4, 4, 11, 0.0, &mut d);
        assert!(!o.inserted);
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn slots_are_reused() {
        let mut l = Lru::new(3, u64::MAX, f64::INFINITY);
        for k in 0..1000u128 {
            put(&mut l, k, k as u32);
        }
        assert_eq!(l.len(), 3);
        assert!(l.nodes.len() <= 4);
        let mut d = Vec::new();
        assert_eq!(l.drain(&mut d), 3);
        assert_eq!(d.len(), 3);
        assert!(l.is_empty());
    }

    #[test]
    fn key_split_round_trips() {
        let k: Key = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        assert_eq!(Key::from(K::from(k)), k);
    }
}
