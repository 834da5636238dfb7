//! The users' indexes a process keeps loaded: the most recently used, up
//! to a number of users, so a server that meets thousands of users holds
//! the indexes of the active ones and reads the others from disk again.

use std::collections::HashMap;

/// Users' indexes kept loaded by default.
pub const DEFAULT_CAPACITY: usize = 64;

/// A map from a user's key to their loaded index that forgets the least
/// recently used entry past its capacity.
#[derive(Debug)]
pub(crate) struct IndexCache<V> {
    entries: HashMap<i64, (u64, V)>,
    capacity: usize,
    tick: u64,
}

impl<V> IndexCache<V> {
    /// An empty cache of at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        IndexCache { entries: HashMap::new(), capacity: capacity.max(1), tick: 0 }
    }

    /// Puts `value` for `key` as the most recently used; forgets the least
    /// recently used entry when over capacity.
    pub(crate) fn insert(&mut self, key: i64, value: V) {
        self.tick += 1;
        self.entries.insert(key, (self.tick, value));
        if self.entries.len() > self.capacity {
            let oldest = self.entries.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
    }

    /// Takes the entry for `key` out.
    pub(crate) fn remove(&mut self, key: &i64) -> Option<V> {
        self.entries.remove(key).map(|(_, v)| v)
    }

    /// Entries held at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_least_recently_used_past_capacity() {
        let mut cache = IndexCache::new(2);
        cache.insert(1, "a");
        cache.insert(2, "b");
        // Using 1 again (taken out and put back) makes 2 the oldest.
        let a = cache.remove(&1).unwrap();
        cache.insert(1, a);
        cache.insert(3, "c");
        assert_eq!(cache.len(), 2);
        assert!(cache.remove(&2).is_none(), "2 was the least recently used");
        assert_eq!((cache.remove(&1), cache.remove(&3)), (Some("a"), Some("c")));
        let mut one = IndexCache::new(0);
        one.insert(1, ());
        one.insert(2, ());
        assert_eq!(one.len(), 1, "a capacity of 0 still keeps the entry in use");
    }
}
