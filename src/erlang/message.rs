//! The messages of a ping: what `net_adm:ping` sends and what `net_kernel`
//! answers, and how an incoming frame is recognised as one of them.
//!
//! The call is `{'$gen_call', {From, [alias | Ref]}, {is_auth, Node}}` sent to
//! the registered name `net_kernel`; the answer is `{[alias | Ref], yes}` sent
//! to `From`. The reply tag is echoed exactly, or the caller never matches it.

use super::frame::frame;
use super::term::{Pid, Ref, Term, VERSION};

/// Control message `REG_SEND`: to a registered name.
const REG_SEND: i64 = 6;
/// Control message `SEND`: to a pid.
const SEND: i64 = 2;
/// Control message `SEND_SENDER`: to a pid, naming the sender.
const SEND_SENDER: i64 = 22;
/// Control message `ALIAS_SEND`: to a process alias.
const ALIAS_SEND: i64 = 33;
/// The tag byte of a plain (uncached) distribution message.
const PASS_THROUGH: u8 = b'p';

/// A frame as pulse understands it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
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

/// The process pulse speaks as: `<Node.1.0>`.
pub fn our_pid(node: &str, creation: u32) -> Pid {
    Pid {
        node: node.to_string(),
        id: 1,
        serial: 0,
        creation,
    }
}

/// A reference of ours, unique per call on this node.
pub fn our_ref(node: &str, creation: u32, n: u64) -> Ref {
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

/// The whole frame of `net_adm:ping`'s call to `net_kernel` on `target`.
pub fn is_auth_call(from: &Pid, reference: &Ref, target: &str) -> Vec<u8> {
    let control = Term::Tuple(vec![
        Term::Int(REG_SEND),
        Term::Pid(from.clone()),
        Term::atom(""),
        Term::atom("net_kernel"),
    ]);
    let tag = alias_tag(reference);
    let payload = Term::Tuple(vec![
        Term::atom("$gen_call"),
        Term::Tuple(vec![Term::Pid(from.clone()), tag]),
        Term::Tuple(vec![Term::atom("is_auth"), Term::atom(target)]),
    ]);
    message(&control, &payload)
}

/// The whole frame of `net_kernel`'s answer `yes` to a call.
pub fn is_auth_reply(to: &Pid, tag: &Term) -> Vec<u8> {
    let control = Term::Tuple(vec![Term::Int(SEND), Term::atom(""), Term::Pid(to.clone())]);
    let payload = Term::Tuple(vec![tag.clone(), Term::atom("yes")]);
    message(&control, &payload)
}

/// A ping call to one target, encoded once and reused every round: only
/// the reference's words change, patched in place. It also knows the bytes
/// of the answer `yes`, so a reply is recognised without decoding it.
pub struct CallTemplate {
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
    pub fn new(from: &Pid, node: &str, creation: u32, target: &str) -> CallTemplate {
        let reference = our_ref(node, creation, MARK);
        let frame = is_auth_call(from, &reference, target);
        let mut reply = vec![VERSION];
        Term::Tuple(vec![alias_tag(&reference), Term::atom("yes")]).encode(&mut reply);
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
    pub fn call(&mut self, n: u64) -> &[u8] {
        let words = ref_words(n);
        self.frame[self.ids_at..self.ids_at + 12].copy_from_slice(&words);
        self.reply[self.reply_ids_at..self.reply_ids_at + 12].copy_from_slice(&words);
        &self.frame
    }

    /// Whether `body` answers `yes` to the current call, told from the
    /// bytes alone: a reply's message term is exactly our tag and `yes`,
    /// after a control term of whatever form.
    pub fn is_yes(&self, body: &[u8]) -> bool {
        is_yes_reply(body, &self.reply)
    }

    /// The message term that answers `yes` to the current call: what
    /// [`is_yes_reply`] looks for.
    pub fn yes_reply(&self) -> &[u8] {
        &self.reply
    }
}

/// Whether `body` is a message whose term is `reply` (after a control term
/// of whatever form).
pub fn is_yes_reply(body: &[u8], reply: &[u8]) -> bool {
    body.first() == Some(&PASS_THROUGH) && body.ends_with(reply)
}

/// The words of our reference number `n`, as they are encoded.
fn ref_words(n: u64) -> [u8; 12] {
    let mut w = [0u8; 12];
    w[..4].copy_from_slice(&(n as u32).to_be_bytes());
    w[4..8].copy_from_slice(&((n >> 32) as u32).to_be_bytes());
    w
}

fn alias_tag(reference: &Ref) -> Term {
    Term::List(
        vec![Term::atom("alias")],
        Box::new(Term::Ref(reference.clone())),
    )
}

/// The answer to an `is_auth` call, built from the call's own bytes without
/// decoding it, for calls of the exact form `net_adm:ping` sends. `None`
/// for anything else, which [`parse`] then looks at properly.
pub fn answer_is_auth(body: &[u8]) -> Option<Vec<u8>> {
    let mut c = Cursor {
        bytes: body,
        pos: 0,
    };
    c.expect(&[
        PASS_THROUGH,
        VERSION,
        SMALL_TUPLE,
        4,
        SMALL_INTEGER,
        REG_SEND as u8,
    ])?;
    c.pid()?;
    c.atom()?;
    if c.atom()? != b"net_kernel" {
        return None;
    }
    c.expect(&[VERSION, SMALL_TUPLE, 3])?;
    if c.atom()? != b"$gen_call" {
        return None;
    }
    c.expect(&[SMALL_TUPLE, 2])?;
    let from = c.pid()?;
    let tag = c.tag()?;
    c.expect(&[SMALL_TUPLE, 2])?;
    if c.atom()? != b"is_auth" {
        return None;
    }
    c.atom()?;
    if c.pos != body.len() {
        return None;
    }
    // SEND {2, '', From} then {Tag, yes}.
    let mut reply = Vec::with_capacity(from.len() + tag.len() + 24);
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
    Some(reply)
}

/// The answer to any `is_auth` call: straight from the bytes when the call
/// has the usual form, else from the decoded call. `None` when `body` is
/// not such a call.
pub fn answer_call(body: &[u8]) -> Option<Vec<u8>> {
    answer_is_auth(body).or_else(|| match parse(body) {
        Incoming::IsAuth { from, tag } => Some(is_auth_reply(&from, &tag)),
        _ => None,
    })
}

const SMALL_INTEGER: u8 = 97;
const SMALL_TUPLE: u8 = 104;
const LIST: u8 = 108;
const SMALL_ATOM_UTF8: u8 = 119;
const ATOM_UTF8: u8 = 118;
const NEW_PID: u8 = 88;
const NEWER_REFERENCE: u8 = 90;

/// Reads the few fixed shapes of a ping call, borrowing from the frame.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }

    fn expect(&mut self, want: &[u8]) -> Option<()> {
        (self.take(want.len())? == want).then_some(())
    }

    /// An atom's text (either UTF-8 atom form).
    fn atom(&mut self) -> Option<&'a [u8]> {
        let len = match self.take(1)?[0] {
            SMALL_ATOM_UTF8 => self.take(1)?[0] as usize,
            ATOM_UTF8 => {
                let b = self.take(2)?;
                u16::from_be_bytes([b[0], b[1]]) as usize
            }
            _ => return None,
        };
        self.take(len)
    }

    /// A whole NEW_PID_EXT, as its bytes.
    fn pid(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        self.expect(&[NEW_PID])?;
        self.atom()?;
        self.take(12)?;
        Some(&self.bytes[start..self.pos])
    }

    /// A whole NEWER_REFERENCE_EXT, as its bytes.
    fn reference(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        self.expect(&[NEWER_REFERENCE])?;
        let n = self.take(2)?;
        let words = u16::from_be_bytes([n[0], n[1]]) as usize;
        self.atom()?;
        self.take(4 + 4 * words)?;
        Some(&self.bytes[start..self.pos])
    }

    /// A reply tag, `[alias | Ref]` or a plain reference, as its bytes.
    fn tag(&mut self) -> Option<&'a [u8]> {
        let start = self.pos;
        if self.bytes.get(self.pos) == Some(&LIST) {
            self.expect(&[LIST, 0, 0, 0, 1])?;
            self.atom()?;
        }
        self.reference()?;
        Some(&self.bytes[start..self.pos])
    }
}

/// Recognises a frame's body. Anything that does not decode, or is not a
/// ping call or a reply, is [`Incoming::Other`].
pub fn parse(body: &[u8]) -> Incoming {
    parse_inner(body).unwrap_or(Incoming::Other)
}

fn parse_inner(body: &[u8]) -> Option<Incoming> {
    let rest = body.strip_prefix(&[PASS_THROUGH])?;
    let (control, used) = Term::decode(rest).ok()?;
    let (payload, _) = Term::decode(rest.get(used..)?).ok()?;
    let control = control.as_tuple()?;
    let kind = match control.first()? {
        Term::Int(k) => *k,
        _ => return None,
    };
    match kind {
        REG_SEND if control.get(3)?.as_atom()? == "net_kernel" => parse_call(&payload),
        SEND | SEND_SENDER | ALIAS_SEND => parse_reply(&payload),
        _ => None,
    }
}

/// `{'$gen_call', {From, Tag}, {is_auth, _}}`
fn parse_call(payload: &Term) -> Option<Incoming> {
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
mod tests {
    use super::*;

    #[test]
    fn call_has_the_documented_size_and_parses_back() {
        let from = our_pid("rs@127.0.0.1", 0x12345);
        let r = our_ref("rs@127.0.0.1", 0x12345, 7);
        let frame = is_auth_call(&from, &r, "rs@127.0.0.1");
        // A 12-character name gives a 160-byte body.
        assert_eq!(frame.len(), 4 + 160);
        match parse(&frame[4..]) {
            Incoming::IsAuth { from: f, tag } => {
                assert_eq!(f, from);
                let reply = is_auth_reply(&f, &tag);
                assert_eq!(
                    parse(&reply[4..]),
                    Incoming::Reply {
                        reference: r,
                        value: Term::atom("yes")
                    }
                );
            }
            other => panic!("not a call: {other:?}"),
        }
    }

    #[test]
    fn the_fast_answer_equals_the_decoded_one() {
        let from = our_pid("caller@127.0.0.1", 77);
        for n in [1, 7, u64::MAX - 3] {
            let call = is_auth_call(&from, &our_ref("caller@127.0.0.1", 77, n), "me@h");
            let Incoming::IsAuth { from: f, tag } = parse(&call[4..]) else {
                panic!("not a call");
            };
            assert_eq!(answer_is_auth(&call[4..]), Some(is_auth_reply(&f, &tag)));
        }
        // A plain reference as the tag works too.
        let control = Term::Tuple(vec![
            Term::Int(REG_SEND),
            Term::Pid(from.clone()),
            Term::atom(""),
            Term::atom("net_kernel"),
        ]);
        let tag = Term::Ref(our_ref("caller@127.0.0.1", 77, 5));
        let payload = Term::Tuple(vec![
            Term::atom("$gen_call"),
            Term::Tuple(vec![Term::Pid(from.clone()), tag.clone()]),
            Term::Tuple(vec![Term::atom("is_auth"), Term::atom("me@h")]),
        ]);
        let call = message(&control, &payload);
        assert_eq!(answer_is_auth(&call[4..]), Some(is_auth_reply(&from, &tag)));
        // Every truncation, and trailing bytes, fall back to the slow path.
        for end in 0..call.len() - 4 {
            assert_eq!(answer_is_auth(&call[4..4 + end]), None);
        }
        let mut longer = call[4..].to_vec();
        longer.push(0);
        assert_eq!(answer_is_auth(&longer), None);
    }

    #[test]
    fn a_template_call_and_its_reply_match_the_slow_path() {
        let me = our_pid("me@h", 9);
        let mut template = CallTemplate::new(&me, "me@h", 9, "peer@h");
        for n in [1, 2, 1 << 40] {
            let slow = is_auth_call(&me, &our_ref("me@h", 9, n), "peer@h");
            assert_eq!(template.call(n), &slow[..]);
            let Incoming::IsAuth { from, tag } = parse(&slow[4..]) else {
                panic!("not a call");
            };
            let reply = is_auth_reply(&from, &tag);
            assert!(template.is_yes(&reply[4..]));
            // The reply to another call, or another answer, is not this one's yes.
            let other = is_auth_call(&me, &our_ref("me@h", 9, n + 1), "peer@h");
            let Incoming::IsAuth { from, tag } = parse(&other[4..]) else {
                panic!("not a call");
            };
            assert!(!template.is_yes(&is_auth_reply(&from, &tag)[4..]));
            let control = Term::Tuple(vec![Term::Int(SEND), Term::atom(""), Term::Pid(from)]);
            let no = message(&control, &Term::Tuple(vec![tag, Term::atom("no")]));
            assert!(!template.is_yes(&no[4..]));
        }
    }

    #[test]
    fn other_messages_and_garbage_are_other() {
        assert_eq!(parse(b""), Incoming::Other);
        assert_eq!(parse(b"p\x83"), Incoming::Other);
        assert_eq!(parse(b"q\x83\x6a\x83\x6a"), Incoming::Other);
        // A REG_SEND to another name.
        let from = our_pid("a@h", 1);
        let control = Term::Tuple(vec![
            Term::Int(6),
            Term::Pid(from),
            Term::atom(""),
            Term::atom("rex"),
        ]);
        let frame = message(&control, &Term::atom("features_request"));
        assert_eq!(parse(&frame[4..]), Incoming::Other);
    }
}
