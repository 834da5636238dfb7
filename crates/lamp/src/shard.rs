//! Splitting a benchmark's users into N shards that N machines run at once
//! (`bench lamp --shard I/N`; a Kubernetes Indexed Job gives each pod its
//! completion index as I). Shard I takes a contiguous block of users, the
//! same on every machine, and `bench merge` joins the shards' rows.

use std::ops::Range;
use std::str::FromStr;

use crate::error::LampError;
use crate::format::{user_ordinals, Example};

/// Shard `index` of `count` (0-based: `0/4` .. `3/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, from 0.
    pub index: usize,
    /// How many shards.
    pub count: usize,
}

impl Shard {
    /// The users (ordinals among `users`) this shard runs: blocks differ in
    /// size by at most one, and together cover every user once.
    pub fn users(self, users: usize) -> Range<usize> {
        (self.index * users / self.count)..((self.index + 1) * users / self.count)
    }
}

impl FromStr for Shard {
    type Err = LampError;

    /// Parses `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &'static str| LampError::Shard { spec: s.to_string(), reason };
        let (i, n) = s.split_once('/').ok_or_else(|| bad("no '/'"))?;
        let index: usize = i.trim().parse().map_err(|_| bad("I is not a whole number"))?;
        let count: usize = n.trim().parse().map_err(|_| bad("N is not a whole number"))?;
        if count == 0 || index >= count {
            return Err(bad("I must be below N"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The examples of users `range` (ordinals by first appearance), all of
/// their questions, in order.
pub fn users_in(examples: Vec<Example>, range: Range<usize>) -> Vec<Example> {
    let ordinals = user_ordinals(&examples);
    examples.into_iter().zip(ordinals).filter(|(_, u)| range.contains(u)).map(|(e, _)| e).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shards_cover_every_user_once() {
        for users in [0, 1, 7, 50, 51] {
            for count in 1..=5 {
                let mut seen = vec![0; users];
                for index in 0..count {
                    let r = Shard { index, count }.users(users);
                    assert!(r.len() <= users / count + 1);
                    r.for_each(|u| seen[u] += 1);
                }
                assert!(seen.iter().all(|&n| n == 1), "{users} users, {count} shards");
            }
        }
        assert_eq!(Shard { index: 1, count: 3 }.users(10), 3..6);
    }

    #[test]
    fn shards_parse_and_refuse_bad_specs() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        assert_eq!(Shard { index: 2, count: 4 }.to_string(), "2/4");
        for bad in ["4/4", "1/0", "a/2", "3", "-1/2"] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("I/N"), "{e}");
        }
    }

    #[test]
    fn a_slice_keeps_whole_users() {
        let ex = |user: &str, id: &str| Example {
            question: crate::format::Question { id: id.into(), input: String::new(), profile: Vec::new() },
            gold: "1".into(),
            user: Some(user.into()),
        };
        let examples = vec![ex("a", "1"), ex("b", "2"), ex("a", "3"), ex("c", "4")];
        let ids: Vec<String> = users_in(examples, 0..1).into_iter().map(|e| e.question.id).collect();
        assert_eq!(ids, ["1", "3"]);
    }
}
