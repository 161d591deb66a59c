//! Where a round's peers come from: one seam, [`PeerSource`], with one
//! implementation per file: the shared directory ([`dir`]), DNS
//! ([`dns`]) and an S3 bucket ([`s3`]). A source proposes; pings decide, in the round and in the pure
//! [`crate::membership::Membership`].
//!
//! The round thread holds one `Box<dyn PeerSource>` and asks it, every
//! round and in this order: [`PeerSource::heartbeat`],
//! [`PeerSource::candidates`], [`PeerSource::expired`] (after membership
//! judged them), then, once the pings are done, [`PeerSource::pinged`].
//! Between rounds, [`PeerSource::entry`] answers for one node (a link that
//! closed or came up, a member refused at its old address); at the end,
//! [`PeerSource::leave`]. No call waits on the network: a source that asks
//! a server (DNS, and later a store) does so on a thread of its own, and
//! the round only takes what it found.
//!
//! A source is started by [`start`], the one place that knows every kind,
//! and stops when dropped, so a node that fails later in its start leaves
//! nothing running.

pub(crate) mod dir;
pub(crate) mod dns;
pub(crate) mod s3;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::erlang::Identity;
use crate::error::Error;
use crate::membership::Outcome;
use crate::name::NodeName;
use crate::registry::Record;

/// What a round asks of wherever its peers come from.
pub(crate) trait PeerSource: Send {
    /// Says where peers look that this node is alive. Returns whether that
    /// works: while it does not, the source's heartbeats say nothing, so
    /// no one is expired. A change either way is said once, in `warnings`.
    fn heartbeat(&mut self, warnings: &mut Vec<String>) -> bool;

    /// This round's candidates. Warnings (a listing that fails or works
    /// again, entries skipped) are said once, in `warnings`.
    fn candidates(&mut self, warnings: &mut Vec<String>) -> Candidates;

    /// Membership expired these members (as `candidates` gave them): the
    /// source forgets them, and removes what it can of their entries.
    fn expired(&mut self, expired: &[Record], warnings: &mut Vec<String>);

    /// What the pings found (or a link that closed: a failure too). A
    /// source may look again at whoever failed.
    fn pinged(&mut self, results: &[(NodeName, Outcome)]);

    /// One node's entry as it stands now, for a node heard from between
    /// listings. A source that would have to ask over the network says
    /// [`Entry::Unknown`].
    fn entry(&mut self, name: &NodeName) -> Entry;

    /// Takes our own entry out, so peers see a leave; says how (for the
    /// leave's line), with any trouble in `warnings`. Called once, when
    /// the rounds end; dropping a source that did not leave leaves too.
    fn leave(&mut self, warnings: &mut Vec<String>) -> &'static str;
}

/// One round's candidates.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    /// Every node proposed, ourselves included; `None` when the source
    /// could not be read: it says nothing about anyone, and the members
    /// are whoever we knew.
    pub(crate) records: Option<Vec<Record>>,
    /// The source is not the one the last round read (a directory deleted
    /// and made again): entries missing now may only not be back yet.
    pub(crate) replaced: bool,
    /// Members that left since the last round without an entry that
    /// vanished to say so (DNS: their EPMD answers without them).
    pub(crate) left: Vec<NodeName>,
}

/// One node's entry, read between listings.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// Its entry now.
    Found(Record),
    /// It has none: it left, or never had one.
    Missing,
    /// Not known without asking over the network, which never happens on
    /// the round thread.
    Unknown,
}

/// Starts the source `config` names, for our node at `addr`, and calls
/// `register` (which makes us known to EPMD) where that source needs it:
/// after the directory's claim, whose judge asks EPMD whether a foreign
/// node holds our name and must not find our own registration; before the
/// DNS thread, which names nodes through EPMD. When `register` fails, the
/// source started so far is dropped, and stops.
pub(crate) fn start<E>(
    config: &Config,
    addr: SocketAddr,
    me: &Arc<Identity>,
    register: impl FnOnce() -> Result<E, Error>,
) -> Result<(Box<dyn PeerSource>, E), Error> {
    if let Some((location, settings)) = &config.s3 {
        // Like the directory: our name is taken before EPMD knows it.
        let s3 = s3::S3Source::start(config, location, settings, addr)?;
        return Ok((Box::new(s3), register()?));
    }
    match &config.dns {
        None => {
            let dir = dir::DirSource::claim(config, addr, me)?;
            Ok((Box::new(dir), register()?))
        }
        Some(name) => {
            let registered = register()?;
            let dns = dns::DnsSource::start(config, name, addr, me)?;
            Ok((Box::new(dns), registered))
        }
    }
}
