//! The messages pulse sends and answers: the ping, and the replies a node
//! owes for processes it does not have.
//!
//! The ping is `{'$gen_call', {From, Ref}, {is_auth, Node}}` sent to the
//! registered name `net_kernel`; the answer is `{Ref, yes}` sent to `From`.
//! The tag is a plain reference, as a node without process aliases calls:
//! pulse does not offer `DFLAG_ALIAS`, and from OTP 27 on `gen:reply/2`
//! answers an `[alias | Ref]` tag by sending to the alias, which the runtime
//! drops on a link that did not negotiate aliases. A peer's own tag, either
//! form, is echoed exactly to its pid, or the caller never matches it.
//!
//! pulse has two processes: `net_kernel`, which answers `is_auth` calls, and
//! the pid its own calls come from. A monitor on anything else ends at once
//! with `noproc`, a link to anything else with an exit `noproc`, and every
//! unlink is acknowledged, as an OTP node does for a process it lacks. So a
//! `GenServer.call` to a name on pulse fails at once instead of hanging.

use super::cursor::Cursor;
use super::frame::frame;
use super::term::tag::{
    ATOM_UTF8, LIST, NEW_PID, NEWER_REFERENCE, SMALL_ATOM_UTF8, SMALL_INTEGER, SMALL_TUPLE,
};
use super::term::{Pid, Ref, Term, VERSION};

/// Control message `LINK {1, From, To}`.
const LINK: i64 = 1;
/// Control message `SEND {2, '', To}`: to a pid.
const SEND: i64 = 2;
/// Control message `EXIT {3, From, To, Reason}`: a linked process ended.
const EXIT: i64 = 3;
/// Control message `REG_SEND {6, From, '', Name}`: to a registered name.
const REG_SEND: i64 = 6;
/// Control message `MONITOR_P {19, Watcher, Watched, Ref}`; `Watched` is a
/// pid or a registered name.
const MONITOR_P: i64 = 19;
/// Control message `MONITOR_P_EXIT {21, Watched, Watcher, Ref, Reason}`.
const MONITOR_P_EXIT: i64 = 21;
/// Control message `SEND_SENDER {22, From, To}`: to a pid, naming the sender.
const SEND_SENDER: i64 = 22;
/// Control message `ALIAS_SEND {33, From, Alias}`: to a process alias.
const ALIAS_SEND: i64 = 33;
/// Control message `UNLINK_ID {35, Id, From, To}` (the new link protocol).
const UNLINK_ID: i64 = 35;
/// Control message `UNLINK_ID_ACK {36, Id, From, To}`.
const UNLINK_ID_ACK: i64 = 36;
/// The tag byte of a plain (uncached) distribution message.
const PASS_THROUGH: u8 = b'p';
/// The registered name pulse answers as.
const NET_KERNEL: &str = "net_kernel";

/// A frame as pulse understands it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// Someone asks whether we are up: answer with [`is_auth_reply`].
    IsAuth {
        /// The calling process.
        from: Pid,
        /// The reply tag, to echo.
        tag: Term,
    },
    /// An answer to a call of ours, by the reference in its tag.
    Reply {
        /// The reference of the call it answers.
        reference: Ref,
        /// The answer.
        value: Term,
    },
    /// Anything else: ignored.
    Other,
}

/// The process number and serial pulse calls from.
const OUR_PROCESS: (u32, u32) = (1, 0);

/// The process pulse speaks as: `<Node.1.0>`.
pub(crate) fn our_pid(node: &str, creation: u32) -> Pid {
    Pid {
        node: node.to_string(),
        id: OUR_PROCESS.0,
        serial: OUR_PROCESS.1,
        creation,
    }
}

/// A reference of ours, unique per call on this node.
pub(crate) fn our_ref(node: &str, creation: u32, n: u64) -> Ref {
    Ref {
        node: node.to_string(),
        creation,
        ids: vec![n as u32, (n >> 32) as u32, 0],
    }
}

fn message(control: &Term, payload: &Term) -> Vec<u8> {
    let mut body = vec![PASS_THROUGH, VERSION];
    control.encode(&mut body);
    body.push(VERSION);
    payload.encode(&mut body);
    frame(&body)
}

/// A frame of a control message alone (links, monitors).
fn signal(control: Vec<Term>) -> Vec<u8> {
    let mut body = vec![PASS_THROUGH, VERSION];
    Term::Tuple(control).encode(&mut body);
    frame(&body)
}

/// The whole frame of `net_adm:ping`'s call to `net_kernel` on `target`.
pub(crate) fn is_auth_call(from: &Pid, reference: &Ref, target: &str) -> Vec<u8> {
    let control = Term::Tuple(vec![
        Term::Int(REG_SEND),
        Term::Pid(from.clone()),
        Term::atom(""),
        Term::atom(NET_KERNEL),
    ]);
    let tag = Term::Ref(reference.clone());
    let payload = Term::Tuple(vec![
        Term::atom("$gen_call"),
        Term::Tuple(vec![Term::Pid(from.clone()), tag]),
        Term::Tuple(vec![Term::atom("is_auth"), Term::atom(target)]),
    ]);
    message(&control, &payload)
}

/// The whole frame of `net_kernel`'s answer `yes` to a call.
pub(crate) fn is_auth_reply(to: &Pid, tag: &Term) -> Vec<u8> {
    let control = Term::Tuple(vec![Term::Int(SEND), Term::atom(""), Term::Pid(to.clone())]);
    let payload = Term::Tuple(vec![tag.clone(), Term::atom("yes")]);
    message(&control, &payload)
}

/// A ping call to one target, encoded once and reused for every ping: only
/// the reference's words change, patched in place. It also knows the bytes
/// of the answer `yes`, so a reply is recognised without decoding it.
pub(crate) struct CallTemplate {
    frame: Vec<u8>,
    ids_at: usize,
    reply: Vec<u8>,
    reply_ids_at: usize,
}

/// Reference words no real call uses, to find where they sit in the bytes.
const MARK: u64 = 0xDEAD_BEEF_CAFE_BABE;

impl CallTemplate {
    /// The call from `from` (on node `node`, creation `creation`) to the
    /// `net_kernel` of `target`.
    pub(crate) fn new(from: &Pid, node: &str, creation: u32, target: &str) -> CallTemplate {
        let reference = our_ref(node, creation, MARK);
        let frame = is_auth_call(from, &reference, target);
        let mut reply = vec![VERSION];
        Term::Tuple(vec![Term::Ref(reference.clone()), Term::atom("yes")]).encode(&mut reply);
        let mark = ref_words(MARK);
        let find = |bytes: &[u8]| bytes.windows(12).position(|w| w == mark).unwrap_or(0);
        CallTemplate {
            ids_at: find(&frame),
            reply_ids_at: find(&reply),
            frame,
            reply,
        }
    }

    /// Makes the template call number `n` and returns its frame.
    pub(crate) fn call(&mut self, n: u64) -> &[u8] {
        let words = ref_words(n);
        self.frame[self.ids_at..self.ids_at + 12].copy_from_slice(&words);
        self.reply[self.reply_ids_at..self.reply_ids_at + 12].copy_from_slice(&words);
        &self.frame
    }

    /// The current call's frame, as [`CallTemplate::call`] made it.
    pub(crate) fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// Whether `body` answers `yes` to the current call, told from the
    /// bytes alone: a reply's message term is exactly our tag and `yes`,
    /// after a control term of whatever form.
    #[cfg(test)]
    pub(crate) fn is_yes(&self, body: &[u8]) -> bool {
        is_yes_reply(body, &self.reply)
    }

    /// The message term that answers `yes` to the current call: what
    /// [`is_yes_reply`] looks for.
    pub(crate) fn yes_reply(&self) -> &[u8] {
        &self.reply
    }
}

/// Whether `body` is a message whose term is `reply` (after a control term
/// of whatever form).
pub(crate) fn is_yes_reply(body: &[u8], reply: &[u8]) -> bool {
    body.first() == Some(&PASS_THROUGH) && body.ends_with(reply)
}

/// The words of our reference number `n`, as they are encoded.
fn ref_words(n: u64) -> [u8; 12] {
    let mut w = [0u8; 12];
    w[..4].copy_from_slice(&(n as u32).to_be_bytes());
    w[4..8].copy_from_slice(&((n >> 32) as u32).to_be_bytes());
    w
}

/// Writes into `out` (replacing what it held) the answer to an `is_auth`
/// call, built from the call's own bytes without decoding it, for calls of
/// the exact form `net_adm:ping` sends. False for anything else, which
/// [`parse`] then looks at properly.
pub(crate) fn answer_is_auth(body: &[u8], out: &mut Vec<u8>) -> bool {
    answer_is_auth_opt(body, out).is_some()
}

fn answer_is_auth_opt(body: &[u8], reply: &mut Vec<u8>) -> Option<()> {
    let mut c = Cursor::new(body);
    c.expect(&[
        PASS_THROUGH,
        VERSION,
        SMALL_TUPLE,
        4,
        SMALL_INTEGER,
        REG_SEND as u8,
    ])?;
    pid(&mut c)?;
    atom(&mut c)?;
    if atom(&mut c)? != NET_KERNEL.as_bytes() {
        return None;
    }
    c.expect(&[VERSION, SMALL_TUPLE, 3])?;
    if atom(&mut c)? != b"$gen_call" {
        return None;
    }
    c.expect(&[SMALL_TUPLE, 2])?;
    let from = pid(&mut c)?;
    let tag = reply_tag(&mut c)?;
    c.expect(&[SMALL_TUPLE, 2])?;
    if atom(&mut c)? != b"is_auth" {
        return None;
    }
    atom(&mut c)?;
    if !c.at_end() {
        return None;
    }
    // SEND {2, '', From} then {Tag, yes}.
    reply.clear();
    reply.extend([
        0,
        0,
        0,
        0,
        PASS_THROUGH,
        VERSION,
        SMALL_TUPLE,
        3,
        SMALL_INTEGER,
        SEND as u8,
    ]);
    reply.extend([SMALL_ATOM_UTF8, 0]);
    reply.extend(from);
    reply.extend([VERSION, SMALL_TUPLE, 2]);
    reply.extend(tag);
    reply.extend([SMALL_ATOM_UTF8, 3, b'y', b'e', b's']);
    let len = (reply.len() - 4) as u32;
    reply[..4].copy_from_slice(&len.to_be_bytes());
    Some(())
}

/// Writes into `out` (replacing what it held) what pulse owes in answer to
/// a frame's body, as a whole frame ready to send: `yes` to an `is_auth`
/// call, `noproc` to a monitor or link on a process pulse lacks, an
/// acknowledgement to an unlink. False for every other message, which is
/// dropped. Never fails on garbage. A reader keeps one `out` for its
/// link's life, so answering a ping allocates nothing.
pub(crate) fn answer(body: &[u8], out: &mut Vec<u8>) -> bool {
    if answer_is_auth(body, out) {
        return true;
    }
    match answer_decoded(body) {
        Some(frame) => {
            *out = frame;
            true
        }
        None => false,
    }
}

fn answer_decoded(body: &[u8]) -> Option<Vec<u8>> {
    let (control, payload) = decode(body)?;
    match control.as_slice() {
        [Term::Int(REG_SEND), ..] => match parse_call(&control, payload.as_ref()?)? {
            Incoming::IsAuth { from, tag } => Some(is_auth_reply(&from, &tag)),
            _ => None,
        },
        [
            Term::Int(MONITOR_P),
            watcher @ Term::Pid(_),
            watched,
            r @ Term::Ref(_),
        ] => (!serves(watched)).then(|| {
            signal(vec![
                Term::Int(MONITOR_P_EXIT),
                watched.clone(),
                watcher.clone(),
                r.clone(),
                Term::atom("noproc"),
            ])
        }),
        [Term::Int(LINK), from @ Term::Pid(_), to @ Term::Pid(_)] => (!serves(to)).then(|| {
            signal(vec![
                Term::Int(EXIT),
                to.clone(),
                from.clone(),
                Term::atom("noproc"),
            ])
        }),
        [
            Term::Int(UNLINK_ID),
            id,
            from @ Term::Pid(_),
            to @ Term::Pid(_),
        ] => Some(signal(vec![
            Term::Int(UNLINK_ID_ACK),
            id.clone(),
            to.clone(),
            from.clone(),
        ])),
        _ => None,
    }
}

/// Whether `process` (a pid or registered name sent to us) is one pulse
/// has: `net_kernel`, or the pid pulse calls from.
fn serves(process: &Term) -> bool {
    match process {
        Term::Atom(name) => name == NET_KERNEL,
        Term::Pid(p) => (p.id, p.serial) == OUR_PROCESS,
        _ => false,
    }
}

/// An atom's text (either UTF-8 atom form).
fn atom<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let len = match c.u8()? {
        SMALL_ATOM_UTF8 => usize::from(c.u8()?),
        ATOM_UTF8 => usize::from(c.u16()?),
        _ => return None,
    };
    c.take(len)
}

/// A whole NEW_PID_EXT, as its bytes.
fn pid<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let start = c.pos();
    c.expect(&[NEW_PID])?;
    atom(c)?;
    c.take(12)?;
    Some(c.since(start))
}

/// A whole NEWER_REFERENCE_EXT, as its bytes.
fn reference<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let start = c.pos();
    c.expect(&[NEWER_REFERENCE])?;
    let words = usize::from(c.u16()?);
    atom(c)?;
    c.take(4 + 4 * words)?;
    Some(c.since(start))
}

/// A reply tag, `[alias | Ref]` or a plain reference, as its bytes.
fn reply_tag<'a>(c: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let start = c.pos();
    if c.peek() == Some(LIST) {
        c.expect(&[LIST, 0, 0, 0, 1])?;
        atom(c)?;
    }
    reference(c)?;
    Some(c.since(start))
}

/// A message's control tuple, and its payload when it has one.
fn decode(body: &[u8]) -> Option<(Vec<Term>, Option<Term>)> {
    let rest = body.strip_prefix(&[PASS_THROUGH])?;
    let (control, used) = Term::decode(rest).ok()?;
    let Term::Tuple(control) = control else {
        return None;
    };
    let rest = rest.get(used..)?;
    let payload = if rest.is_empty() {
        None
    } else {
        Some(Term::decode(rest).ok()?.0)
    };
    Some((control, payload))
}

/// Recognises a frame's body. Anything that does not decode, or is not a
/// ping call or a reply, is [`Incoming::Other`].
pub(crate) fn parse(body: &[u8]) -> Incoming {
    parse_inner(body).unwrap_or(Incoming::Other)
}

fn parse_inner(body: &[u8]) -> Option<Incoming> {
    let (control, payload) = decode(body)?;
    match control.first()? {
        Term::Int(REG_SEND) => parse_call(&control, payload.as_ref()?),
        Term::Int(SEND | SEND_SENDER | ALIAS_SEND) => parse_reply(payload.as_ref()?),
        _ => None,
    }
}

/// `{'$gen_call', {From, Tag}, {is_auth, _}}` sent to `net_kernel`.
fn parse_call(control: &[Term], payload: &Term) -> Option<Incoming> {
    if control.get(3)?.as_atom()? != NET_KERNEL {
        return None;
    }
    let [call, from_tag, request] = payload.as_tuple()? else {
        return None;
    };
    if call.as_atom()? != "$gen_call" || request.as_tuple()?.first()?.as_atom()? != "is_auth" {
        return None;
    }
    let [Term::Pid(from), tag] = from_tag.as_tuple()? else {
        return None;
    };
    Some(Incoming::IsAuth {
        from: from.clone(),
        tag: tag.clone(),
    })
}

/// `{[alias | Ref], Value}` or `{Ref, Value}`
fn parse_reply(payload: &Term) -> Option<Incoming> {
    let [tag, value] = payload.as_tuple()? else {
        return None;
    };
    let reference = match tag {
        Term::Ref(r) => r,
        Term::List(head, tail) if head.len() == 1 => match tail.as_ref() {
            Term::Ref(r) => r,
            _ => return None,
        },
        _ => return None,
    };
    Some(Incoming::Reply {
        reference: reference.clone(),
        value: value.clone(),
    })
}

#[cfg(test)]
mod tests;
