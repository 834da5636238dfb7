//! A bounded cache of KV states keyed on exact token ids, per scope.
//!
//! PersonaAgent's calls for one user start with the same long prefix (the
//! persona and the tool descriptions). After a call, the KV state of its
//! tokens is kept here; a later call in the same scope whose prompt starts
//! with some of those tokens restores them and prefills only the rest.
//! Entries are evicted least-recently-used first to stay under a byte
//! budget, and a lookup only ever sees entries of its own scope (a user's
//! cached persona never serves another user).

use super::KvCache;

/// Default byte budget of a model's prefix cache.
pub const DEFAULT_BUDGET_BYTES: usize = 256 * 1024 * 1024;

struct Entry {
    scope: String,
    tokens: Vec<u32>,
    kv: KvCache,
    last_used: u64,
}

/// LRU store of KV snapshots.
pub struct PrefixCache {
    entries: Vec<Entry>,
    budget: usize,
    clock: u64,
}

/// Counters for reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes of KV data held.
    pub bytes: usize,
    /// The byte budget.
    pub budget: usize,
}

impl PrefixCache {
    /// An empty cache holding at most `budget` bytes of KV data.
    pub fn new(budget: usize) -> Self {
        PrefixCache { entries: Vec::new(), budget, clock: 0 }
    }

    /// Bytes of KV data held (always at most the budget).
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.kv.bytes()).sum()
    }

    /// Current size and budget.
    pub fn stats(&self) -> PrefixStats {
        PrefixStats { entries: self.entries.len(), bytes: self.bytes(), budget: self.budget }
    }

    /// Changes the budget, evicting what no longer fits.
    pub fn set_budget(&mut self, budget: usize) {
        self.budget = budget;
        self.evict_to(budget);
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entry of `scope` sharing the longest prefix with `tokens`, and
    /// the length of that shared prefix (0 when none).
    pub fn lookup(&mut self, scope: &str, tokens: &[u32]) -> Option<(&KvCache, usize)> {
        let (best, len) =
            self.entries.iter().enumerate().filter(|(_, e)| e.scope == scope).map(|(i, e)| (i, common_prefix(&e.tokens, tokens))).max_by_key(|&(_, n)| n)?;
        if len == 0 {
            return None;
        }
        self.clock += 1;
        let entry = &mut self.entries[best];
        entry.last_used = self.clock;
        Some((&entry.kv, len))
    }

    /// Whether an entry of `scope` already holds `tokens` (as a whole or
    /// as its prefix): storing them again would add nothing, so callers can
    /// skip copying the state.
    pub fn covers(&self, scope: &str, tokens: &[u32]) -> bool {
        self.entries.iter().any(|e| e.scope == scope && e.tokens.starts_with(tokens))
    }

    /// Stores the KV state of `tokens` (a snapshot the caller made of
    /// exactly those positions). Entries of the same scope whose tokens are
    /// a prefix of `tokens` are dropped (the new one serves them); an entry
    /// larger than the whole budget is not kept.
    pub fn insert(&mut self, scope: &str, tokens: Vec<u32>, kv: KvCache) {
        if kv.len() != tokens.len() || kv.bytes() > self.budget || tokens.is_empty() || self.covers(scope, &tokens) {
            return;
        }
        self.entries.retain(|e| !(e.scope == scope && tokens.starts_with(&e.tokens)));
        if self.entries.iter().any(|e| e.scope == scope && e.tokens.starts_with(&tokens)) {
            return;
        }
        self.clock += 1;
        let needed = self.budget - kv.bytes();
        self.evict_to(needed);
        self.entries.push(Entry { scope: scope.to_string(), tokens, kv, last_used: self.clock });
    }

    fn evict_to(&mut self, budget: usize) {
        while self.bytes() > budget {
            let Some(oldest) = self.entries.iter().enumerate().min_by_key(|(_, e)| e.last_used).map(|(i, _)| i) else {
                return;
            };
            self.entries.swap_remove(oldest);
        }
    }
}

/// Length of the common prefix of two token sequences.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    /// A cache of `n` positions whose keys hold `tag`, for a tiny model of
    /// 2 layers, 1 KV head, width 4 (32 bytes per position per layer pair).
    fn filled(n: usize, tag: f32) -> KvCache {
        let mut kv = KvCache::new(2, 1, 4, 4096, &Device::Cpu);
        kv.reserve(n).unwrap();
        let t = Tensor::full(tag, (1, n, 4), &Device::Cpu).unwrap();
        for layer in 0..2 {
            kv.append(layer, &t, &t).unwrap();
        }
        kv.advance(n);
        kv.snapshot(n).unwrap()
    }

    #[test]
    fn lookups_never_cross_scopes() {
        let mut cache = PrefixCache::new(1 << 20);
        cache.insert("alice", vec![1, 2, 3, 4], filled(4, 1.0));
        assert!(cache.lookup("bob", &[1, 2, 3, 4, 5]).is_none());
        let (kv, len) = cache.lookup("alice", &[1, 2, 3, 9]).unwrap();
        assert_eq!((kv.len(), len), (4, 3));
        assert!(cache.lookup("alice", &[7, 8]).is_none());
    }

    #[test]
    fn the_byte_budget_holds_and_the_least_recent_entry_goes_first() {
        let per_entry = filled(10, 0.0).bytes();
        assert_eq!(per_entry, 10 * 2 * 4 * 2 * 4);
        let mut cache = PrefixCache::new(per_entry * 3);
        for i in 0..3u32 {
            cache.insert("u", vec![100 + i; 10], filled(10, i as f32));
        }
        assert_eq!(cache.stats().entries, 3);
        cache.lookup("u", &[100; 10]).unwrap(); // entry 0 is now the most recent
        cache.insert("u", vec![200; 10], filled(10, 9.0));
        assert!(cache.bytes() <= per_entry * 3);
        assert!(cache.lookup("u", &[100; 10]).is_some(), "recently used entry kept");
        assert!(cache.lookup("u", &[101; 10]).is_none(), "least recently used entry evicted");
        for i in 0..50u32 {
            cache.insert(&format!("user{i}"), vec![i; 10], filled(10, 0.0));
            assert!(cache.bytes() <= per_entry * 3);
        }
        cache.insert("big", vec![1; 40], filled(40, 0.0));
        assert!(cache.lookup("big", &[1; 40]).is_none(), "an entry over the budget is not kept");
        cache.set_budget(per_entry);
        assert_eq!(cache.stats().entries, 1);
    }

    #[test]
    fn a_longer_entry_replaces_its_prefixes() {
        let mut cache = PrefixCache::new(1 << 20);
        cache.insert("u", vec![1, 2], filled(2, 0.0));
        cache.insert("u", vec![1, 2, 3], filled(3, 0.0));
        assert!(cache.covers("u", &[1]) && !cache.covers("u", &[1, 2, 3, 4]) && !cache.covers("v", &[1]));
        cache.insert("u", vec![1], filled(1, 0.0));
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(cache.lookup("u", &[1, 2, 3, 4]).unwrap().1, 3);
    }
}
