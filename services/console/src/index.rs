//! The pure core of the inbox: which `INBOX` sequences belong to which user,
//! which of them are read, which cleared. Every replica builds the same
//! index from the stream (the messages) and the `talon_inbox_state` bucket
//! (each user's read and cleared marks), so any replica serves any user.
//!
//! A message is an alert or a group message (the alerts of one message of
//! a grouped channel); the index knows which from its headers alone, and
//! keeps one entry per alert id, or per group message, and user.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// What one inbox message is, as its headers say.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Entry {
    /// An alert (`Talon-Alert-Id`).
    Alert(String),
    /// A group message (`Talon-Group`).
    Group(GroupRef),
}

impl Entry {
    /// The entry of a message from its headers: `Talon-Group` makes it a
    /// group message (`None` when the value is not `<key>-<sequence>`: the
    /// message is skipped); else `Talon-Alert-Id` names its alert, or the
    /// sequence stands in for one.
    pub fn of_headers(group: Option<&str>, alert_id: Option<&str>, seq: u64) -> Option<Entry> {
        match (group, alert_id) {
            (Some(g), _) => GroupRef::parse(g).map(Entry::Group),
            (None, Some(id)) => Some(Entry::Alert(id.to_owned())),
            (None, None) => Some(Entry::Alert(format!("seq-{seq}"))),
        }
    }
}

/// One group message: its group's key (32 lowercase hex digits) and its
/// number within the group (1, 2, ...). Written `<key>-<sequence>`; the
/// inbox entry's id is `g-<key>-<sequence>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupRef {
    pub key: String,
    pub sequence: u64,
}

impl GroupRef {
    /// `key` and `sequence` when they are a group's (32 lowercase hex
    /// digits, 1 or more).
    pub fn new(key: &str, sequence: u64) -> Option<GroupRef> {
        let hex = key.len() == 32
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (hex && sequence >= 1).then(|| GroupRef {
            key: key.to_owned(),
            sequence,
        })
    }

    /// `<key>-<sequence>` (a `Talon-Group` header, the `group` filter of
    /// `/v1/alerts`), written exactly so (no sign, no leading zero).
    pub fn parse(text: &str) -> Option<GroupRef> {
        let (key, sequence) = text.split_once('-')?;
        let n = sequence
            .parse::<u64>()
            .ok()
            .filter(|n| n.to_string() == sequence)?;
        GroupRef::new(key, n)
    }

    /// The inbox entry's id: `g-<key>-<sequence>`.
    pub fn entry_id(&self) -> String {
        format!("g-{self}")
    }
}

impl std::fmt::Display for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.key, self.sequence)
    }
}

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
    /// Sequence → entry, of the messages not cleared.
    messages: BTreeMap<u64, Entry>,
    /// Entries seen (kept after a clear, so a late duplicate of a cleared
    /// alert or group message stays out).
    seen: HashSet<Entry>,
    marks: Marks,
}

/// Every user's messages, by `INBOX` sequence.
#[derive(Debug, Default)]
pub struct Index {
    users: HashMap<String, UserBox>,
}

impl Index {
    /// Adds message `seq` (`entry`) to `user`'s inbox. Returns false when
    /// it is not added: the user already has that alert or group message,
    /// or the message was cleared.
    pub fn add(&mut self, user: &str, seq: u64, entry: Entry) -> bool {
        let b = self.users.entry(user.to_owned()).or_default();
        if seq <= b.marks.cleared_up_to || b.seen.contains(&entry) {
            return false;
        }
        b.seen.insert(entry.clone());
        b.messages.insert(seq, entry);
        true
    }

    /// What `user`'s message `seq` is, while it is in the inbox.
    pub fn entry(&self, user: &str, seq: u64) -> Option<&Entry> {
        self.users.get(user).and_then(|b| b.messages.get(&seq))
    }

    /// The sequence of `user`'s message of `group`, while it is in the
    /// inbox (not cleared, not aged out).
    pub fn find_group(&self, user: &str, group: &GroupRef) -> Option<u64> {
        let b = self.users.get(user)?;
        b.messages
            .iter()
            .rev()
            .find(|(_, e)| matches!(e, Entry::Group(g) if g == group))
            .map(|(&seq, _)| seq)
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

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    /// One step against the index.
    enum Step {
        Add(&'static str, u64, &'static str, bool),
        /// Message `seq` of group message `KEY-n`.
        AddGroup(&'static str, u64, u64, bool),
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
                        index.add(user, seq, Entry::Alert(id.into())),
                        added,
                        "step {i}: add {user} {seq}"
                    )
                }
                AddGroup(user, seq, n, added) => {
                    let group = GroupRef::new(KEY, n).unwrap();
                    assert_eq!(
                        index.add(user, seq, Entry::Group(group)),
                        added,
                        "step {i}: add group {user} {seq}"
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
            index.add("alice", seq, Entry::Alert(format!("a{seq}")));
        }
        assert_eq!(index.page("alice", None, 3), vec![10, 9, 8]);
        assert_eq!(index.page("alice", Some(8), 3), vec![7, 6, 5]);
        assert_eq!(index.page("alice", Some(2), 3), vec![1]);
        assert_eq!(index.latest("alice"), Some(10));
    }

    #[test]
    fn a_group_message_is_one_entry_per_user_read_and_cleared_like_an_alert() {
        check(
            &[
                Add("alice", 1, "a1", true),
                AddGroup("alice", 2, 1, true),
                AddGroup("bob", 3, 1, true),
                // The same group message again (sent twice): one entry.
                AddGroup("alice", 4, 1, false),
                // The group's next message is an entry of its own.
                AddGroup("alice", 5, 2, true),
                // An alert id that looks like a group entry's id is an alert.
                Add("alice", 6, "g-0123456789abcdef0123456789abcdef-1", true),
                Mark("alice", 2, 0),
            ],
            &[("alice", 2, &[6, 5, 2, 1]), ("bob", 1, &[3])],
        );
        check(
            &[
                AddGroup("alice", 2, 1, true),
                AddGroup("alice", 3, 2, true),
                Mark("alice", 2, 2),
                // Cleared: a late copy stays out.
                AddGroup("alice", 9, 1, false),
            ],
            &[("alice", 1, &[3])],
        );
    }

    #[test]
    fn groups_are_found_by_their_ref_while_in_the_inbox() {
        let mut index = Index::default();
        let one = GroupRef::new(KEY, 1).unwrap();
        let two = GroupRef::new(KEY, 2).unwrap();
        index.add("alice", 4, Entry::Group(one.clone()));
        index.add("alice", 7, Entry::Group(two.clone()));
        assert_eq!(index.find_group("alice", &one), Some(4));
        assert_eq!(index.find_group("alice", &two), Some(7));
        assert_eq!(index.find_group("bob", &one), None, "alice's, not bob's");
        assert_eq!(index.entry("alice", 7), Some(&Entry::Group(two)));
        index.mark(
            "alice",
            Marks {
                read_up_to: 4,
                cleared_up_to: 4,
            },
        );
        assert_eq!(index.find_group("alice", &one), None, "cleared");
    }

    #[test]
    fn group_refs_are_exactly_key_dash_sequence() {
        let ok = GroupRef::parse(&format!("{KEY}-12")).unwrap();
        assert_eq!((ok.key.as_str(), ok.sequence), (KEY, 12));
        assert_eq!(ok.to_string(), format!("{KEY}-12"));
        assert_eq!(ok.entry_id(), format!("g-{KEY}-12"));
        for bad in [
            String::new(),
            "-1".into(),
            KEY.to_string(),
            format!("{KEY}-"),
            format!("{KEY}-0"),
            format!("{KEY}-01"),
            format!("{KEY}-+1"),
            format!("{KEY}--1"),
            format!("{KEY}-1-2"),
            format!("{KEY}-18446744073709551616"),
            format!("{}-1", KEY.to_uppercase()),
            format!("{}-1", &KEY[1..]),
            format!("{KEY}0-1"),
            format!("{}g-1", &KEY[1..]),
            format!("{KEY}-1 "),
            format!("{KEY}-١"),
        ] {
            assert_eq!(GroupRef::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn headers_say_what_a_message_is() {
        let g = format!("{KEY}-3");
        assert_eq!(
            Entry::of_headers(Some(&g), None, 9),
            Some(Entry::Group(GroupRef::new(KEY, 3).unwrap()))
        );
        // The group header decides, and a bad one skips the message.
        assert_eq!(
            Entry::of_headers(Some(&g), Some("a1"), 9),
            Some(Entry::Group(GroupRef::new(KEY, 3).unwrap()))
        );
        assert_eq!(Entry::of_headers(Some("nope"), Some("a1"), 9), None);
        assert_eq!(
            Entry::of_headers(None, Some("a1"), 9),
            Some(Entry::Alert("a1".into()))
        );
        assert_eq!(
            Entry::of_headers(None, None, 9),
            Some(Entry::Alert("seq-9".into()))
        );
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
