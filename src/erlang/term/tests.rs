//! Tests of the external term format: round trips, and hostile input refused without a panic.

use super::*;

fn roundtrip(t: &Term) -> Term {
    let mut buf = vec![VERSION];
    t.encode(&mut buf);
    let (back, used) = Term::decode(&buf).expect("decodes");
    assert_eq!(used, buf.len());
    back
}

#[test]
fn terms_roundtrip() {
    let pid = Term::Pid(Pid {
        node: "a@127.0.0.1".into(),
        id: 1,
        serial: 0,
        creation: 7,
    });
    let r = Term::Ref(Ref {
        node: "a@127.0.0.1".into(),
        creation: 7,
        ids: vec![1, 2, 3],
    });
    let alias = Term::List(vec![Term::atom("alias")], Box::new(r));
    for t in [
        Term::Int(5),
        Term::Int(-5),
        Term::Int(70_000),
        Term::Int(i64::MIN + 1),
        Term::atom(""),
        Term::Tuple(vec![pid, alias, Term::Nil]),
        Term::Binary(b"xyz".to_vec()),
    ] {
        let back = roundtrip(&t);
        if let Term::Int(i) = t {
            if i32::try_from(i).is_err() {
                // A big integer comes back as raw bytes: pulse never needs its value.
                assert!(matches!(back, Term::Other(_)));
                continue;
            }
        }
        assert_eq!(back, t);
    }
}

#[test]
fn control_term_matches_the_documented_bytes() {
    // {6, Pid, '', net_kernel} as a real net_adm:ping sends it.
    let pid = Pid {
        node: "rs@127.0.0.1".into(),
        id: 1,
        serial: 0,
        creation: 0x12345,
    };
    let t = Term::Tuple(vec![
        Term::Int(6),
        Term::Pid(pid),
        Term::atom(""),
        Term::atom("net_kernel"),
    ]);
    let mut buf = vec![VERSION];
    t.encode(&mut buf);
    let mut want = vec![0x83, 0x68, 0x04, 0x61, 0x06, 0x58, 0x77, 0x0c];
    want.extend(b"rs@127.0.0.1");
    want.extend([
        0, 0, 0, 1, 0, 0, 0, 0, 0, 0x01, 0x23, 0x45, 0x77, 0x00, 0x77, 0x0a,
    ]);
    want.extend(b"net_kernel");
    assert_eq!(buf, want);
}

/// `external_pid()` and `external_ref()` of OTP's
/// `erts/emulator/test/guard_SUITE.erl`: node names as `ATOM_EXT`.
#[test]
fn otp_test_suite_vectors_decode() {
    let mut pid = vec![131, 88, 100, 0, 11];
    pid.extend(b"arne@seldon");
    pid.extend([0, 0, 0, 50, 0, 0, 0, 0, 96, 96, 14, 170]);
    let want = Pid {
        node: "arne@seldon".into(),
        id: 50,
        serial: 0,
        creation: 0x6060_0EAA,
    };
    assert_eq!(Term::decode(&pid), Ok((Term::Pid(want), pid.len())));
    let mut r = vec![131, 90, 0, 3, 100, 0, 11];
    r.extend(b"arne@zaphod");
    r.extend([
        96, 96, 14, 188, 0, 1, 106, 122, 169, 196, 0, 1, 6, 56, 120, 157,
    ]);
    let want = Ref {
        node: "arne@zaphod".into(),
        creation: 0x6060_0EBC,
        ids: vec![0x0001_6A7A, 0xA9C4_0001, 0x0638_789D],
    };
    assert_eq!(Term::decode(&r), Ok((Term::Ref(want), r.len())));
}

/// The larger encodings `V4_NC` allows, laid out as the external term
/// format documentation gives them (OTP 25's `binary_to_term` takes each
/// of these): full 32-bit pid fields, a 64-bit port number, a 5-word
/// reference.
#[test]
fn v4_pids_ports_and_references_decode() {
    let node = |out: &mut Vec<u8>| {
        out.extend([SMALL_ATOM_UTF8, 10]);
        out.extend(b"other@host");
    };
    let mut pid = vec![VERSION, NEW_PID];
    node(&mut pid);
    pid.extend([0xFF; 8]);
    pid.extend([0, 0, 0, 3]);
    let want = Term::Pid(Pid {
        node: "other@host".into(),
        id: u32::MAX,
        serial: u32::MAX,
        creation: 3,
    });
    assert_eq!(Term::decode(&pid), Ok((want.clone(), pid.len())));
    assert_eq!(roundtrip(&want), want);

    let mut port = vec![VERSION, V4_PORT];
    node(&mut port);
    port.extend((1u64 << 40).to_be_bytes());
    port.extend([0, 0, 0, 3]);
    assert_eq!(
        Term::decode(&port),
        Ok((Term::Other(port[1..].to_vec()), port.len()))
    );

    let mut r = vec![VERSION, NEWER_REFERENCE, 0, 5];
    node(&mut r);
    r.extend([0, 0, 0, 3]);
    (1u32..=5).for_each(|w| r.extend(w.to_be_bytes()));
    let want = Term::Ref(Ref {
        node: "other@host".into(),
        creation: 3,
        ids: vec![1, 2, 3, 4, 5],
    });
    assert_eq!(Term::decode(&r), Ok((want.clone(), r.len())));
    assert_eq!(roundtrip(&want), want);
}

#[test]
fn garbage_never_panics() {
    // Every prefix of a valid term, and a spread of random bytes, must
    // decode to a value or an error.
    let mut valid = vec![VERSION];
    Term::Tuple(vec![
        Term::Int(1),
        Term::Binary(vec![9; 40]),
        Term::atom("x"),
    ])
    .encode(&mut valid);
    for end in 0..valid.len() {
        assert!(Term::decode(&valid[..end]).is_err());
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        let len = (seed % 64) as usize;
        let mut bytes = vec![VERSION];
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            bytes.push((seed % 140) as u8);
        }
        let _ = Term::decode(&bytes);
    }
}

#[test]
fn forged_lengths_are_rejected_without_allocating() {
    let bytes = [VERSION, LIST, 0xff, 0xff, 0xff, 0xff, NIL];
    assert_eq!(Term::decode(&bytes), Err(DecodeError::Truncated));
    let bytes = [VERSION, BINARY, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(Term::decode(&bytes), Err(DecodeError::Truncated));
    let mut deep = vec![VERSION];
    deep.extend(std::iter::repeat_n([SMALL_TUPLE, 1], 100).flatten());
    deep.push(NIL);
    assert_eq!(Term::decode(&deep), Err(DecodeError::TooDeep));
}
