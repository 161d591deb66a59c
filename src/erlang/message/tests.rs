//! The ping's encodings and what pulse answers, from bytes.

use super::*;

#[test]
fn call_has_the_documented_size_and_parses_back() {
    let from = our_pid("rs@127.0.0.1", 0x12345);
    let r = our_ref("rs@127.0.0.1", 0x12345, 7);
    let frame = is_auth_call(&from, &r, "rs@127.0.0.1");
    // A 12-character name gives a 148-byte body.
    assert_eq!(frame.len(), 4 + 148);
    match parse(&frame[4..]) {
        Incoming::IsAuth { from: f, tag } => {
            assert_eq!(f, from);
            // A plain reference: pulse offers no aliases, so an `[alias | Ref]`
            // tag would be answered to an alias the peer's runtime drops.
            assert_eq!(tag, Term::Ref(r.clone()));
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

/// What [`answer`] owes, if anything.
fn owed(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    answer(body, &mut out).then_some(out)
}

/// The fast path's answer, if it gives one.
fn fast(body: &[u8]) -> Option<Vec<u8>> {
    // Something left from a longer answer must not survive into this one.
    let mut out = vec![0xAA; 400];
    answer_is_auth(body, &mut out).then_some(out)
}

#[test]
fn the_fast_answer_equals_the_decoded_one() {
    let from = our_pid("caller@127.0.0.1", 77);
    for n in [1, 7, u64::MAX - 3] {
        let call = is_auth_call(&from, &our_ref("caller@127.0.0.1", 77, n), "me@h");
        let Incoming::IsAuth { from: f, tag } = parse(&call[4..]) else {
            panic!("not a call");
        };
        assert_eq!(fast(&call[4..]), Some(is_auth_reply(&f, &tag)));
    }
    // The `[alias | Ref]` tag OTP's own calls carry is echoed too.
    let control = Term::Tuple(vec![
        Term::Int(REG_SEND),
        Term::Pid(from.clone()),
        Term::atom(""),
        Term::atom("net_kernel"),
    ]);
    let tag = Term::List(
        vec![Term::atom("alias")],
        Box::new(Term::Ref(our_ref("caller@127.0.0.1", 77, 5))),
    );
    let payload = Term::Tuple(vec![
        Term::atom("$gen_call"),
        Term::Tuple(vec![Term::Pid(from.clone()), tag.clone()]),
        Term::Tuple(vec![Term::atom("is_auth"), Term::atom("me@h")]),
    ]);
    let call = message(&control, &payload);
    assert_eq!(fast(&call[4..]), Some(is_auth_reply(&from, &tag)));
    // Every truncation, and trailing bytes, fall back to the slow path.
    for end in 0..call.len() - 4 {
        assert_eq!(fast(&call[4..4 + end]), None);
    }
    let mut longer = call[4..].to_vec();
    longer.push(0);
    assert_eq!(fast(&longer), None);
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

fn v4_pid(node: &str, id: u32) -> Term {
    Term::Pid(Pid {
        node: node.into(),
        id,
        serial: u32::MAX,
        creation: 0xF00D_0001,
    })
}

fn five_word_ref() -> Term {
    Term::Ref(Ref {
        node: "x@h".into(),
        creation: 0xF00D_0001,
        ids: vec![1, 2, 3, 4, 5],
    })
}

/// The control tuple of an answer frame.
fn control_of(frame: &[u8]) -> Vec<Term> {
    let (control, payload) = decode(&frame[4..]).expect("decodes");
    assert_eq!(payload, None, "a signal has no payload");
    control
}

#[test]
fn monitors_on_missing_processes_end_with_noproc() {
    let watcher = v4_pid("x@h", 0x8000_0001);
    let r = five_word_ref();
    for watched in [
        Term::atom("foo"),
        v4_pid("me@h", 77),
        v4_pid("me@h", u32::MAX),
    ] {
        let ask = signal(vec![
            Term::Int(MONITOR_P),
            watcher.clone(),
            watched.clone(),
            r.clone(),
        ]);
        let reply = owed(&ask[4..]).expect("an answer");
        assert_eq!(
            control_of(&reply),
            [
                Term::Int(MONITOR_P_EXIT),
                watched,
                watcher.clone(),
                r.clone(),
                Term::atom("noproc")
            ]
        );
    }
    // The documented bytes of one: {21, foo, Watcher, Ref, noproc}.
    let ask = signal(vec![
        Term::Int(MONITOR_P),
        watcher.clone(),
        Term::atom("foo"),
        r.clone(),
    ]);
    let mut want = vec![b'p', 131, 104, 5, 97, 21, 119, 3, b'f', b'o', b'o'];
    watcher.encode(&mut want);
    r.encode(&mut want);
    want.extend([119, 6]);
    want.extend(b"noproc");
    assert_eq!(owed(&ask[4..]).expect("an answer")[4..], want);
}

#[test]
fn monitors_and_links_on_what_pulse_has_get_no_answer() {
    let watcher = v4_pid("x@h", 5);
    for watched in [Term::atom(NET_KERNEL), Term::Pid(our_pid("me@h", 9))] {
        let ask = signal(vec![
            Term::Int(MONITOR_P),
            watcher.clone(),
            watched.clone(),
            five_word_ref(),
        ]);
        assert_eq!(owed(&ask[4..]), None);
        let link = signal(vec![Term::Int(LINK), watcher.clone(), watched]);
        assert_eq!(owed(&link[4..]), None);
    }
    // A demonitor, an exit and old-style unlink are dropped.
    let me = Term::Pid(our_pid("me@h", 9));
    for control in [
        vec![Term::Int(20), watcher.clone(), me.clone(), five_word_ref()],
        vec![
            Term::Int(EXIT),
            watcher.clone(),
            me.clone(),
            Term::atom("x"),
        ],
        vec![Term::Int(4), watcher.clone(), me.clone()],
    ] {
        assert_eq!(owed(&signal(control)[4..]), None);
    }
}

#[test]
fn links_end_with_noproc_and_unlinks_are_acknowledged() {
    let from = v4_pid("x@h", 0x8000_0001);
    let to = v4_pid("me@h", 2);
    let link = signal(vec![Term::Int(LINK), from.clone(), to.clone()]);
    assert_eq!(
        control_of(&owed(&link[4..]).expect("an answer")),
        [
            Term::Int(EXIT),
            to.clone(),
            from.clone(),
            Term::atom("noproc")
        ]
    );
    // Unlink ids are 64-bit: a big one travels as SMALL_BIG_EXT and
    // comes back as it was.
    let me = Term::Pid(our_pid("me@h", 9));
    for id in [Term::Int(7), Term::Int(i64::MAX)] {
        let unlink = signal(vec![Term::Int(UNLINK_ID), id, from.clone(), me.clone()]);
        let (sent, _) = decode(&unlink[4..]).expect("decodes");
        let reply = owed(&unlink[4..]).expect("an answer");
        assert_eq!(
            control_of(&reply),
            [
                Term::Int(UNLINK_ID_ACK),
                sent[1].clone(),
                me.clone(),
                from.clone()
            ]
        );
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
    assert_eq!(owed(&frame[4..]), None);
    // Every truncation of an answered signal, and random bytes, are
    // dropped without a panic.
    let ask = signal(vec![
        Term::Int(MONITOR_P),
        v4_pid("x@h", 1),
        Term::atom("foo"),
        five_word_ref(),
    ]);
    for end in 0..ask.len() - 4 {
        assert_eq!(owed(&ask[4..4 + end]), None, "cut at {end}");
    }
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..5_000 {
        let mut bytes = vec![PASS_THROUGH, VERSION, SMALL_TUPLE, 4, SMALL_INTEGER, 19];
        for _ in 0..(seed % 48) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push((seed % 130) as u8);
        }
        let _ = owed(&bytes);
    }
}
