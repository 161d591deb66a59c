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
    let tag = Term::List(
        vec![Term::atom("alias")],
        Box::new(Term::Ref(reference.clone())),
    );
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
