//! The pure core of the inbox: which `INBOX` sequences belong to which user,
//! which of them are read, which cleared. Every replica builds the same
//! index from the stream (the messages) and the `talon_inbox_state` bucket
//! (each user's read and cleared marks), so any replica serves any user.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// A user's marks, stored in `talon_inbox_state` under the user's name.
/// Both only grow, so merging two views is taking the larger of each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    /// Every message at or below this sequence is read.
    pub read_up_to: u64,
    /// Every message at or below this sequence is gone for good.
    pub cleared_up_to: u64,
}

impl Marks {
    /// The larger of each mark; clearing also reads.
    pub fn merge(self, other: Marks) -> Marks {
        let cleared_up_to = self.cleared_up_to.max(other.cleared_up_to);
        Marks {
            read_up_to: self.read_up_to.max(other.read_up_to).max(cleared_up_to),
            cleared_up_to,
        }
    }
}

#[derive(Debug, Default)]
struct UserBox {
    /// Sequence → alert id, of the messages not cleared.
    messages: BTreeMap<u64, String>,
    /// Alert ids seen (kept after a clear, so a late duplicate of a cleared
    /// alert stays out).
    seen: HashSet<String>,
    marks: Marks,
}

/// Every user's messages, by `INBOX` sequence.
#[derive(Debug, Default)]
pub struct Index {
    users: HashMap<String, UserBox>,
}

impl Index {
    /// Adds message `seq` of alert `alert_id` to `user`'s inbox. Returns
    /// false when it is not added: the user already has that alert, or the
    /// message was cleared.
    pub fn add(&mut self, user: &str, seq: u64, alert_id: &str) -> bool {
        let b = self.users.entry(user.to_owned()).or_default();
        if seq <= b.marks.cleared_up_to || !b.seen.insert(alert_id.to_owned()) {
            return false;
        }
        b.messages.insert(seq, alert_id.to_owned());
        true
    }

    /// Merges `marks` into `user`'s; returns the result.
    pub fn mark(&mut self, user: &str, marks: Marks) -> Marks {
        let b = self.users.entry(user.to_owned()).or_default();
        b.marks = b.marks.merge(marks);
        let cleared = b.marks.cleared_up_to;
        b.messages.retain(|&seq, _| seq > cleared);
        b.marks
    }

    /// `user`'s marks.
    pub fn marks(&self, user: &str) -> Marks {
        self.users.get(user).map(|b| b.marks).unwrap_or_default()
    }

    /// How many of `user`'s messages are unread.
    pub fn unread(&self, user: &str) -> usize {
        self.users.get(user).map_or(0, |b| {
            b.messages
                .range(b.marks.read_up_to.saturating_add(1)..)
                .count()
        })
    }

    /// `user`'s newest message sequence, if any.
    pub fn latest(&self, user: &str) -> Option<u64> {
        self.users
            .get(user)
            .and_then(|b| b.messages.keys().next_back().copied())
    }

    /// Up to `limit` of `user`'s sequences below `before` (all when `None`),
    /// newest first.
    pub fn page(&self, user: &str, before: Option<u64>, limit: usize) -> Vec<u64> {
        let Some(b) = self.users.get(user) else {
            return Vec::new();
        };
        b.messages
            .range(..before.unwrap_or(u64::MAX))
            .rev()
            .take(limit)
            .map(|(&seq, _)| seq)
            .collect()
    }

    /// Is `seq` read for `user`?
    pub fn is_read(&self, user: &str, seq: u64) -> bool {
        seq <= self.marks(user).read_up_to
    }

    /// Forgets message `seq` (no longer in the stream).
    pub fn remove(&mut self, user: &str, seq: u64) {
        if let Some(b) = self.users.get_mut(user) {
            b.messages.remove(&seq);
        }
    }

    /// Forgets every message below `first` (aged out of the stream); returns
    /// the users that lost some.
    pub fn expire_below(&mut self, first: u64) -> Vec<String> {
        let mut changed = Vec::new();
        for (user, b) in &mut self.users {
            let before = b.messages.len();
            b.messages = b.messages.split_off(&first);
            if b.messages.len() != before {
                changed.push(user.clone());
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step against the index.
    enum Step {
        Add(&'static str, u64, &'static str, bool),
        Mark(&'static str, u64, u64),
        Remove(&'static str, u64),
        Expire(u64),
    }
    use Step::*;

    /// Runs `steps`, then checks `(user, unread, page newest first)`.
    fn check(steps: &[Step], expected: &[(&str, usize, &[u64])]) {
        let mut index = Index::default();
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Add(user, seq, id, added) => {
                    assert_eq!(
                        index.add(user, seq, id),
                        added,
                        "step {i}: add {user} {seq}"
                    )
                }
                Mark(user, read, cleared) => {
                    index.mark(
                        user,
                        Marks {
                            read_up_to: read,
                            cleared_up_to: cleared,
                        },
                    );
                }
                Remove(user, seq) => index.remove(user, seq),
                Expire(first) => {
                    index.expire_below(first);
                }
            }
        }
        for &(user, unread, page) in expected {
            assert_eq!(index.unread(user), unread, "{user}: unread");
            assert_eq!(index.page(user, None, 100), page, "{user}: page");
        }
    }

    #[test]
    fn messages_are_per_user_newest_first() {
        check(
            &[
                Add("alice", 1, "a1", true),
                Add("bob", 2, "a1", true),
                Add("alice", 3, "a2", true),
            ],
            &[("alice", 2, &[3, 1]), ("bob", 1, &[2]), ("carol", 0, &[])],
        );
    }

    #[test]
    fn an_alert_reaches_a_user_once() {
        check(
            &[
                Add("alice", 1, "a1", true),
                Add("alice", 5, "a1", false),
                Add("bob", 6, "a1", true),
            ],
            &[("alice", 1, &[1]), ("bob", 1, &[6])],
        );
    }

    #[test]
    fn read_marks_count_down_unread_only_for_their_user() {
        check(
            &[
                Add("alice", 1, "a1", true),
                Add("bob", 2, "a2", true),
                Add("alice", 3, "a3", true),
                Add("alice", 4, "a4", true),
                Mark("alice", 3, 0),
                // Marks only grow.
                Mark("alice", 1, 0),
            ],
            &[("alice", 1, &[4, 3, 1]), ("bob", 1, &[2])],
        );
    }

    #[test]
    fn clearing_removes_for_good_and_reads() {
        check(
            &[
                Add("alice", 1, "a1", true),
                Add("alice", 2, "a2", true),
                Add("alice", 3, "a3", true),
                Mark("alice", 0, 2),
                // A replica catching up on the stream after the clear.
                Add("alice", 2, "a2", false),
                // A late duplicate of a cleared alert.
                Add("alice", 9, "a1", false),
                Add("alice", 10, "a10", true),
            ],
            &[("alice", 2, &[10, 3])],
        );
    }

    #[test]
    fn marks_seen_before_the_messages_still_apply() {
        check(
            &[
                Mark("alice", 5, 2),
                Add("alice", 1, "a1", false),
                Add("alice", 4, "a4", true),
                Add("alice", 6, "a6", true),
            ],
            &[("alice", 1, &[6, 4])],
        );
    }

    #[test]
    fn removed_and_expired_messages_are_forgotten() {
        check(
            &[
                Add("alice", 1, "a1", true),
                Add("alice", 2, "a2", true),
                Add("bob", 3, "a3", true),
                Add("alice", 4, "a4", true),
                Remove("alice", 4),
                Expire(2),
            ],
            &[("alice", 1, &[2]), ("bob", 1, &[3])],
        );
    }

    #[test]
    fn pages_go_back_from_before() {
        let mut index = Index::default();
        for seq in 1..=10 {
            index.add("alice", seq, &format!("a{seq}"));
        }
        assert_eq!(index.page("alice", None, 3), vec![10, 9, 8]);
        assert_eq!(index.page("alice", Some(8), 3), vec![7, 6, 5]);
        assert_eq!(index.page("alice", Some(2), 3), vec![1]);
        assert_eq!(index.latest("alice"), Some(10));
    }

    #[test]
    fn merging_marks_takes_the_larger_and_clearing_reads() {
        let m = |r, c| Marks {
            read_up_to: r,
            cleared_up_to: c,
        };
        assert_eq!(m(5, 0).merge(m(3, 4)), m(5, 4));
        assert_eq!(m(1, 0).merge(m(0, 7)), m(7, 7));
    }
}
