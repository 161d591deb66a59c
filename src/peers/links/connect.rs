//! Connecting under OTP's status rules: our dial and a peer's connection
//! to us, either of which may find the other under way or a link already
//! up, settled by the names so that each node pair keeps one link.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::PoisonError;
use std::thread;
use std::time::Instant;

use super::{Failed, LinkEvent, Links, MAX_FAILED_NOTES, Pending, READER_STACK, Waited, closed};
use crate::erlang::Phase;
use crate::erlang::handshake::{Admit, HandshakeError};
use crate::erlang::link::{self, DialError, Link};

impl Links {
    /// Opens a link to `peer` at `addr` by `deadline`, or returns the one
    /// that is up already or that the peer's own attempt brings up.
    pub(crate) fn dial(
        self: &Arc<Self>,
        addr: SocketAddr,
        peer: &str,
        deadline: Instant,
    ) -> Result<Arc<Link>, DialError> {
        let id = loop {
            let ours = {
                let mut table = self.lock();
                if let Some(link) = table.up.get(peer) {
                    return Ok(link.clone());
                }
                if table.closed {
                    return Err(DialError::Io(closed()));
                }
                if table.pending.contains_key(peer) {
                    None
                } else {
                    table.next_attempt += 1;
                    let id = table.next_attempt;
                    table.failed.remove(peer);
                    table.pending.insert(peer.to_string(), Pending::Dial(id));
                    Some(id)
                }
            };
            if let Some(id) = ours {
                break id;
            }
            // Someone else's attempt is under way: its link is ours too.
            // If it ends with none (the peer only asked our name, or gave
            // up), we dial ourselves.
            match self.wait_for(peer, deadline, true)? {
                Waited::Up(link) => return Ok(link),
                Waited::NoAttemptLeft => {}
            }
        };
        let still_ours = || self.lock().pending.get(peer) == Some(&Pending::Dial(id));
        let result = link::dial(addr, &self.me, peer, deadline, still_ours);
        let mut table = self.lock();
        if table.pending.get(peer) == Some(&Pending::Dial(id)) {
            table.pending.remove(peer);
        }
        self.changed.notify_all();
        match result {
            Ok(link) => {
                let link = Arc::new(link);
                if table.closed || table.up.contains_key(peer) {
                    // The peer's attempt won meanwhile (`ok_simultaneous`).
                    link.close();
                    return table.up.get(peer).cloned().ok_or(DialError::Io(closed()));
                }
                table.up.insert(peer.to_string(), link.clone());
                let (links, reader) = (self.clone(), link.clone());
                let spawned = thread::Builder::new()
                    .name("pulse-link".into())
                    .stack_size(READER_STACK)
                    .spawn(move || links.serve(reader));
                match spawned {
                    Ok(handle) => {
                        let (done, running) = std::mem::take(&mut table.readers)
                            .into_iter()
                            .partition(|h| h.is_finished());
                        table.readers = running;
                        table.readers.push(handle);
                        drop(table);
                        for reader in done {
                            reader.join().expect("a link reader never panics");
                        }
                        self.changed.notify_all();
                        Ok(link)
                    }
                    Err(e) => {
                        table.up.remove(peer);
                        link.close();
                        Err(DialError::Io(e))
                    }
                }
            }
            // The peer's attempt wins (`nok`), or it keeps the link it has
            // (`alive` answered `false`): wait for that link, which may not
            // have reached our listener yet.
            Err(DialError::Handshake(HandshakeError::Refused(status)))
                if status == "nok" || status == "alive" =>
            {
                drop(table);
                match self.wait_for(peer, deadline, false)? {
                    Waited::Up(link) => Ok(link),
                    // Not waited on: only the deadline ends this wait.
                    Waited::NoAttemptLeft => {
                        Err(DialError::Handshake(HandshakeError::Refused(status)))
                    }
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Waits until a link to `peer` is up, or the deadline, or (with
    /// `while_pending`) until no attempt is left.
    fn wait_for(
        &self,
        peer: &str,
        deadline: Instant,
        while_pending: bool,
    ) -> Result<Waited, DialError> {
        let mut table = self.lock();
        loop {
            if let Some(link) = table.up.get(peer) {
                return Ok(Waited::Up(link.clone()));
            }
            if table.closed {
                return Err(DialError::Io(closed()));
            }
            match table.failed.remove(peer) {
                Some(Failed::BadCookie) => {
                    let e = HandshakeError::BadCookie(peer.to_string());
                    return Err(DialError::Handshake(e));
                }
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DialError::Timeout(Phase::Handshake));
            }
            if while_pending && !table.pending.contains_key(peer) {
                return Ok(Waited::NoAttemptLeft);
            }
            table = self
                .changed
                .wait_timeout(table, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Does the acceptor's handshake on an inbound connection by `deadline`
    /// and enters the link in the table. The link to ourselves (a node pings
    /// itself too) is never entered: its other end is our own dial.
    pub(crate) fn accept(
        &self,
        stream: TcpStream,
        deadline: Instant,
    ) -> Result<Arc<Link>, HandshakeError> {
        let mut marked: Option<(String, u64)> = None;
        let admit = |peer: &str| {
            let mut table = self.lock();
            if peer == self.me.name {
                return Admit::Ok;
            }
            if table.closed {
                return Admit::Refuse;
            }
            let admit = match table.pending.get(peer) {
                _ if table.up.contains_key(peer) => Admit::Alive,
                Some(Pending::Dial(_)) if self.me.name.as_str() > peer => Admit::Refuse,
                Some(Pending::Dial(_)) => Admit::Simultaneous,
                // The older one may never finish (see the module's doc).
                Some(Pending::Inbound(_)) | None => Admit::Ok,
            };
            if admit != Admit::Refuse {
                table.next_attempt += 1;
                let attempt = table.next_attempt;
                table
                    .pending
                    .insert(peer.to_string(), Pending::Inbound(attempt));
                marked = Some((peer.to_string(), attempt));
            }
            admit
        };
        let result = link::accept(stream, &self.me, deadline, admit);
        let mut table = self.lock();
        // A newer connection under the name holds the mark by now: this
        // one's end says nothing about the attempt a dial may wait on.
        let still_marked = marked
            .as_ref()
            .filter(|(peer, attempt)| table.pending.get(peer) == Some(&Pending::Inbound(*attempt)));
        if let Some((peer, _)) = still_marked {
            table.pending.remove(peer);
            // Only a wrong cookie says the peer's attempt will not come back:
            // a peer that hangs up mid-handshake (one asking our name, say)
            // may still be connecting for real.
            if let Err(HandshakeError::BadCookie(_)) = &result {
                let failed = Failed::BadCookie;
                // Any name may knock: the notes stay few.
                if table.failed.len() >= MAX_FAILED_NOTES {
                    table.failed.clear();
                }
                table.failed.insert(peer.clone(), failed);
            }
        }
        self.changed.notify_all();
        let link = Arc::new(result?);
        if link.peer.name == self.me.name {
            return Ok(link);
        }
        if table.closed {
            link.close();
            return Err(HandshakeError::Io(closed()));
        }
        // A new link from a node replaces the old one (it answered `alive`
        // with `true`: it knows the old one is dead).
        if let Some(old) = table.up.insert(link.peer.name.clone(), link.clone()) {
            old.close();
        }
        drop(table);
        self.changed.notify_all();
        let _ = self.events.try_send(LinkEvent::Up {
            peer: link.peer.name.clone(),
        });
        Ok(link)
    }
}
