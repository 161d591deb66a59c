//! The link table: at most one link per node pair, whoever opened it, as
//! Erlang keeps it. The listener adds the links peers open, the dialers the
//! links we open, and the round pings over whichever is there.
//!
//! Every link has one reader thread for its life ([`Links::serve`]). The
//! reader answers the peer's calls and ticks itself, notes the reply the
//! round waits for on the link (the reader that notes the round's last
//! reply wakes the round thread, once), and hands anything else, and the
//! link's end, to the round thread as [`LinkEvent`]s on one channel. A
//! link a peer opened is announced there too, as it enters the table.
//!
//! Simultaneous connects follow OTP's status rules: while our own attempt
//! to node X is under way, X's attempt to us is refused (`nok`) when our
//! name sorts after X's, and else accepted (`ok_simultaneous`) and ours
//! abandoned; when a link to X is already up, X is asked (`alive`) whether
//! it replaces it. A second connection under X's name while the first is
//! still in its handshake goes on as well (OTP settles that one by the
//! names too): a handshake that never finishes, an impostor's, must not
//! keep the real X out for its whole deadline. Whichever finishes holds
//! the link.

mod connect;

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use log::debug;

use crate::erlang::Identity;
use crate::erlang::link::{Link, Pace, Received};

/// Stack of a reader thread: it decodes small terms (nesting is capped), so
/// a small stack keeps thousands of links cheap.
pub(crate) const READER_STACK: usize = 128 * 1024;

/// Frames waiting for the round thread; beyond this a reply is dropped (and
/// counts as missed) rather than let a flooding peer grow our memory.
const EVENTS_CAPACITY: usize = 4096;

/// The longest frame handed to the round thread: a reply to our ping is a
/// few hundred bytes even with the longest node names; anything longer is
/// some other message, and dropped.
const MAX_REPLY: usize = 2048;

/// Most notes of failed inbound attempts kept at once.
const MAX_FAILED_NOTES: usize = 1024;

/// What a link's reader tells the round thread.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// A frame that is not a call, a tick or the reply the round expects:
    /// maybe a reply in another form.
    Frame {
        /// The peer's name.
        peer: String,
        /// The frame's body.
        frame: Vec<u8>,
    },
    /// A peer opened a link to us and passed the handshake: the link is in
    /// the table. A node that just started pings us first thing, so the
    /// round thread learns of it here, before its next round.
    Up {
        /// The peer's name.
        peer: String,
    },
    /// The peer closed the link, or it broke; not sent for links we close.
    Closed {
        /// The peer's name.
        peer: String,
        /// Which link.
        link: u64,
        /// What the reader saw.
        why: String,
    },
}

/// How the peer's own attempt to connect failed.
enum Failed {
    BadCookie,
}

/// How a wait for a link to come up ended, if not in an error.
enum Waited {
    Up(Arc<Link>),
    /// The attempt waited on ended without a link.
    NoAttemptLeft,
}

/// An attempt to connect under way, ours or the peer's, by its number: an
/// attempt that ends clears the mark only if it is still its own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Our dial.
    Dial(u64),
    /// The peer's connection to us, in its handshake (the latest of them).
    Inbound(u64),
}

/// The links that are up, by peer name, with a version that changes
/// whenever a link enters or leaves: the round looks its members' links up
/// again only then.
#[derive(Default)]
struct UpLinks {
    by_peer: HashMap<String, Arc<Link>>,
    version: u64,
}

impl UpLinks {
    fn get(&self, peer: &str) -> Option<&Arc<Link>> {
        self.by_peer.get(peer)
    }

    fn contains_key(&self, peer: &str) -> bool {
        self.by_peer.contains_key(peer)
    }

    fn insert(&mut self, peer: String, link: Arc<Link>) -> Option<Arc<Link>> {
        self.version += 1;
        self.by_peer.insert(peer, link)
    }

    fn remove(&mut self, peer: &str) -> Option<Arc<Link>> {
        self.version += 1;
        self.by_peer.remove(peer)
    }

    fn clear(&mut self) -> Vec<Arc<Link>> {
        self.version += 1;
        self.by_peer.drain().map(|(_, link)| link).collect()
    }
}

#[derive(Default)]
struct Table {
    up: UpLinks,
    pending: HashMap<String, Pending>,
    /// Peers whose own attempt to connect failed in its handshake (a wrong
    /// cookie, say), for a dial of ours that waits on that attempt.
    failed: HashMap<String, Failed>,
    /// Reader threads of the links we opened (the listener joins its own).
    readers: Vec<JoinHandle<()>>,
    closed: bool,
    next_attempt: u64,
}

/// The link table. Shared state behind a lock, the named exception: the
/// listener, the dialers, the readers and the round thread all use it, each
/// holding the lock only to look up or change an entry.
pub(crate) struct Links {
    me: Arc<Identity>,
    pace: Pace,
    table: Mutex<Table>,
    /// Woken whenever a link comes up or an attempt ends.
    changed: Condvar,
    events: Sender<LinkEvent>,
    /// The round's number (high 32 bits) and the replies it still waits for
    /// (low 32 bits), in one word so a reply of an earlier round never
    /// counts for this one; the reader that takes the last one sends on
    /// `all_in`.
    replies: AtomicU64,
    all_in_tx: Sender<()>,
    all_in: Receiver<()>,
}

impl Links {
    /// An empty table for node `me`, and the channel its readers report on.
    pub(crate) fn new(me: Arc<Identity>) -> (Arc<Links>, Receiver<LinkEvent>) {
        let pace = Pace::DEFAULT;
        let (tx, rx) = crossbeam_channel::bounded(EVENTS_CAPACITY);
        let (all_in_tx, all_in) = crossbeam_channel::bounded(1);
        let links = Links {
            me,
            pace,
            table: Mutex::default(),
            changed: Condvar::new(),
            events: tx,
            replies: AtomicU64::new(0),
            all_in_tx,
            all_in,
        };
        (Arc::new(links), rx)
    }

    /// Who we are.
    pub(crate) fn me(&self) -> &Arc<Identity> {
        &self.me
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts counting a new round's replies; returns its number.
    pub(crate) fn reset_replies(&self) -> u32 {
        let next = |s: u64| ((s >> 32) as u32).wrapping_add(1);
        let before = self
            .replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                Some(u64::from(next(s)) << 32)
            })
            .unwrap_or_else(|s| s);
        while self.all_in.try_recv().is_ok() {}
        next(before)
    }

    /// One more reply to wait for (before its ping is written).
    pub(crate) fn await_reply(&self) {
        self.replies.fetch_add(1, Ordering::SeqCst);
    }

    /// A reply of round `round` came (or will not be counted any more);
    /// the last one of the current round wakes it. Replies of other rounds
    /// count for nothing.
    pub(crate) fn reply_came(&self, round: u32) {
        let before = self
            .replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                let waiting = s & u64::from(u32::MAX);
                (s >> 32 == u64::from(round) && waiting > 0).then(|| s - 1)
            });
        if before.is_ok_and(|s| s & u64::from(u32::MAX) == 1) {
            let _ = self.all_in_tx.try_send(());
        }
    }

    /// Ready when every awaited reply has come.
    pub(crate) fn all_in(&self) -> &Receiver<()> {
        &self.all_in
    }

    /// The link to `peer`, if one is up.
    pub(crate) fn get(&self, peer: &str) -> Option<Arc<Link>> {
        self.lock().up.get(peer).cloned()
    }

    /// A number that changes whenever a link comes up or goes: links
    /// looked up under the same number are still the table's.
    pub(crate) fn version(&self) -> u64 {
        self.lock().up.version
    }

    /// The links to `peers`, in their order, looked up at once, and the
    /// table's version they belong to.
    pub(crate) fn get_all<'a>(
        &self,
        peers: impl Iterator<Item = &'a str>,
    ) -> (u64, Vec<Option<Arc<Link>>>) {
        let table = self.lock();
        let links = peers.map(|peer| table.up.get(peer).cloned()).collect();
        (table.up.version, links)
    }

    /// Closes the link to `peer` if it is still link `id`.
    pub(crate) fn drop_link(&self, peer: &str, id: u64) {
        let mut table = self.lock();
        if table.up.get(peer).is_some_and(|l| l.id == id) {
            if let Some(link) = table.up.remove(peer) {
                link.close();
            }
        }
    }

    /// Reads `link` until it ends: the link's reader thread. Its end is
    /// reported unless we closed it ourselves.
    pub(crate) fn serve(&self, link: Arc<Link>) {
        let why = match link.reader(self.pace) {
            Ok(mut reader) => loop {
                match reader.recv(&link) {
                    Ok(Received::Reply(round)) => self.reply_came(round),
                    Ok(Received::Other(frame)) if frame.len() > MAX_REPLY => {}
                    Ok(Received::Other(frame)) => {
                        let event = LinkEvent::Frame {
                            peer: link.peer.name.clone(),
                            frame,
                        };
                        let _ = self.events.try_send(event);
                    }
                    Err(e) => break e,
                }
            },
            Err(e) => e,
        };
        {
            let mut table = self.lock();
            if table
                .up
                .get(&link.peer.name)
                .is_some_and(|l| l.id == link.id)
            {
                table.up.remove(&link.peer.name);
            }
        }
        if link.closed_by_us() {
            return;
        }
        debug!("link to {} ended: {why}", link.peer.name);
        link.close();
        let _ = self.events.try_send(LinkEvent::Closed {
            peer: link.peer.name.clone(),
            link: link.id,
            why: closed_reason(&why),
        });
    }

    /// Closes every link and joins the readers of the links we opened; from
    /// now on no link is entered. Dials under way are not waited for.
    pub(crate) fn close_all(&self) {
        let readers = {
            let mut table = self.lock();
            table.closed = true;
            for link in table.up.clear() {
                link.close();
            }
            std::mem::take(&mut table.readers)
        };
        self.changed.notify_all();
        for handle in readers {
            handle.join().expect("a link reader never panics");
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "node is stopping")
}

/// The reason a down event gives for a link that ended.
fn closed_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionAborted => "connection closed".into(),
        _ => format!("link lost: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_rounds_own_last_reply_wakes_it() {
        let (links, _events) = Links::new(Arc::new(Identity::new("me@h", "c")));
        let old = links.reset_replies();
        links.await_reply();
        let round = links.reset_replies();
        assert_ne!(old, round);
        links.await_reply();
        links.await_reply();
        // A late reply of the round before counts for nothing.
        links.reply_came(old);
        links.reply_came(round);
        assert!(links.all_in().try_recv().is_err());
        links.reply_came(round);
        assert!(links.all_in().try_recv().is_ok());
        // Nothing left to count: more replies change nothing.
        links.reply_came(round);
        assert!(links.all_in().try_recv().is_err());
    }
}
