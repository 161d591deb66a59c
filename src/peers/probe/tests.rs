//! The prober and the link table on loopback, against peers of the test's
//! own that answer, hang, close or take their time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::{Prober, Target};
use crate::erlang::frame::{frame, read_handshake, write_handshake};
use crate::erlang::handshake::{self, Admit, Local};
use crate::erlang::message;
use crate::erlang::{Identity, Phase};
use crate::membership::{Outcome, Reason};
use crate::peers::links::{LinkEvent, Links};
use crate::peers::listener::Listener;

/// A named test thread.
fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .expect("spawn a test thread")
}

/// What a test peer does with connection number `n` after its handshake.
type Behave = fn(usize, TcpStream);

/// A peer on loopback called `name`: accepts, does the acceptor's
/// handshake (after `delay`), then behaves. Counts its connections.
struct Peer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl Peer {
    fn start(name: &'static str, delay: Duration, behave: Behave) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        // Detached: it blocks in accept until the test process ends.
        spawn("test-peer-accept", move || {
            for stream in listener.incoming().flatten() {
                let n = count.fetch_add(1, Ordering::SeqCst);
                spawn("test-peer", move || {
                    thread::sleep(delay);
                    let mut s = stream;
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let local = Local {
                        name,
                        creation: 7,
                        cookie: "c",
                    };
                    if handshake::accept(&mut s, &local, |_| Admit::Ok).is_ok() {
                        behave(n, s);
                    }
                });
            }
        });
        Peer { addr, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// The next frame's body (empty for a tick), or `None` once closed.
fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// Answers every call until the link closes.
fn answer(_: usize, mut s: TcpStream) {
    let mut reply = Vec::new();
    while let Some(body) = read_frame(&mut s) {
        if message::answer(&body, &mut reply) && s.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Reads and never answers, never sends.
fn silent(_: usize, mut s: TcpStream) {
    while read_frame(&mut s).is_some() {}
}

/// Closes its first link on the first ping; answers on later ones.
fn close_first(n: usize, mut s: TcpStream) {
    if n == 0 {
        let _ = read_frame(&mut s);
        return;
    }
    answer(n, s);
}

fn prober() -> Prober {
    let me = Arc::new(Identity::new("me@127.0.0.1", "c"));
    let (links, events) = Links::new(me);
    Prober::new(links, events, 1)
}

fn target(name: &str, addr: SocketAddr) -> Target {
    Target {
        name: name.parse().expect("name"),
        addr: Some(addr),
    }
}

fn outcome(prober: &mut Prober, t: &Target, timeout: Duration) -> Outcome {
    let mut results = prober.round(std::slice::from_ref(t), timeout);
    results.pop().expect("one result").1
}

#[test]
fn a_link_broken_under_a_ping_is_redialled_in_the_same_round() {
    let peer = Peer::start("b@127.0.0.1", Duration::ZERO, close_first);
    let t = target("b@127.0.0.1", peer.addr);
    let mut prober = prober();
    let got = outcome(&mut prober, &t, Duration::from_secs(3));
    assert!(got.is_alive(), "{got:?}");
    assert_eq!(peer.connections(), 2);
    prober.close();
}

#[test]
fn the_links_kept_between_rounds_follow_the_table() {
    let peer = Peer::start("k@127.0.0.1", Duration::ZERO, answer);
    let t = target("k@127.0.0.1", peer.addr);
    let mut prober = prober();
    let timeout = Duration::from_secs(3);
    assert!(outcome(&mut prober, &t, timeout).is_alive());
    prober.look_up_links();
    let kept = prober.members[0].link.as_ref().map(|l| l.id);
    assert!(kept.is_some());
    assert_eq!(kept, prober.links.get("k@127.0.0.1").map(|l| l.id));
    // The table lets the link go: the kept one goes too, and the next
    // round dials a new one.
    prober.links.drop_link("k@127.0.0.1", kept.expect("a link"));
    prober.look_up_links();
    assert!(prober.members[0].link.is_none());
    assert!(outcome(&mut prober, &t, timeout).is_alive());
    assert_eq!(peer.connections(), 2);
    prober.close();
}

#[test]
fn the_third_missed_reply_of_a_silent_peer_drops_the_link() {
    let peer = Peer::start("s@127.0.0.1", Duration::ZERO, silent);
    let t = target("s@127.0.0.1", peer.addr);
    let mut prober = prober();
    let timeout = Duration::from_millis(450);
    let mut ids = Vec::new();
    for round in 1..=3 {
        let got = outcome(&mut prober, &t, timeout);
        assert_eq!(
            got,
            Outcome::Down(Reason::Timeout(Phase::Reply)),
            "round {round}"
        );
        ids.push(prober.links.get("s@127.0.0.1").map(|l| l.id));
    }
    // Kept (the same link) after two misses, gone after the third.
    assert!(ids[0].is_some() && ids[0] == ids[1], "{ids:?}");
    assert_eq!(ids[2], None);
    assert_eq!(peer.connections(), 1);
    prober.close();
}

#[test]
fn a_dial_finishing_after_the_rounds_deadline_hands_its_link_over() {
    let peer = Peer::start("d@127.0.0.1", Duration::from_millis(200), answer);
    let t = target("d@127.0.0.1", peer.addr);
    let mut prober = prober();
    let got = outcome(&mut prober, &t, Duration::from_millis(50));
    assert_eq!(got, Outcome::Down(Reason::Timeout(Phase::Connect)));
    let deadline = Instant::now() + Duration::from_secs(5);
    while prober.links.get("d@127.0.0.1").is_none() {
        assert!(Instant::now() < deadline, "the late dial's link never came");
        thread::sleep(Duration::from_millis(5));
    }
    let got = outcome(&mut prober, &t, Duration::from_secs(2));
    assert!(got.is_alive(), "{got:?}");
    assert_eq!(peer.connections(), 1);
    prober.close();
}

#[test]
fn hung_peers_cost_one_dial_each_and_never_delay_a_live_one() {
    let hung: Vec<Peer> = (0..20)
        .map(|_| Peer::start("h@127.0.0.1", Duration::from_secs(30), answer))
        .collect();
    let live = Peer::start("live@127.0.0.1", Duration::ZERO, answer);
    let mut targets: Vec<Target> = hung
        .iter()
        .enumerate()
        .map(|(i, p)| target(&format!("h{i}@127.0.0.1"), p.addr))
        .collect();
    targets.push(target("live@127.0.0.1", live.addr));
    let mut prober = prober();
    let timeout = Duration::from_millis(300);
    for round in 0..4 {
        let start = Instant::now();
        let results = prober.round(&targets, timeout);
        let took = start.elapsed();
        assert!(
            took < timeout + Duration::from_millis(200),
            "round {round} took {took:?}"
        );
        let (name, last) = results.last().expect("results");
        assert_eq!(name.as_str(), "live@127.0.0.1");
        assert!(last.is_alive(), "round {round}: {last:?}");
        assert!(results[..20].iter().all(|(_, o)| !o.is_alive()));
    }
    // Four rounds in about 1.2 s: each hung peer was dialled once (its dial
    // runs a second, then backs off).
    for p in &hung {
        assert_eq!(p.connections(), 1);
    }
    // Closing never waits for the dials still hanging.
    let start = Instant::now();
    prober.close();
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
}

/// A node's link table with its listener on loopback, and the channel its
/// links report on (kept, so the readers' reports have a receiver).
fn node(name: &str) -> (Arc<Links>, Listener, Receiver<LinkEvent>) {
    let me = Arc::new(Identity::new(name, "c"));
    let (links, events) = Links::new(me);
    let socket = TcpListener::bind("127.0.0.1:0").expect("bind");
    let listener = Listener::start(socket, links.clone()).expect("listener");
    (links, listener, events)
}

#[test]
fn simultaneous_dials_leave_one_link_per_pair() {
    for round in 0..10 {
        let (a, la, _ea) = node("a@127.0.0.1");
        let (b, lb, _eb) = node("b@127.0.0.1");
        let deadline = Instant::now() + Duration::from_secs(5);
        let (a2, b2) = (a.clone(), b.clone());
        let (to_b, to_a) = (lb.local_addr(), la.local_addr());
        let ab = spawn("test-dial-ab", move || {
            a2.dial(to_b, "b@127.0.0.1", deadline).map(|l| l.id)
        });
        let ba = spawn("test-dial-ba", move || {
            b2.dial(to_a, "a@127.0.0.1", deadline).map(|l| l.id)
        });
        let ab = ab.join().expect("a's dial");
        let ba = ba.join().expect("b's dial");
        let (ab, ba) = (ab.expect("a reaches b"), ba.expect("b reaches a"));
        // Each side dialled and got the one link in its table.
        let la_link = a.get("b@127.0.0.1").expect("a's link");
        let lb_link = b.get("a@127.0.0.1").expect("b's link");
        assert_eq!((la_link.id, lb_link.id), (ab, ba), "round {round}");
        assert_ne!(la_link.inbound, lb_link.inbound, "round {round}");
        let (out, inn) = if la_link.inbound {
            (&lb_link, &la_link)
        } else {
            (&la_link, &lb_link)
        };
        assert_eq!(
            Some(inn.addr),
            out.local_addr().ok(),
            "round {round}: two links"
        );
        a.close_all();
        b.close_all();
        la.stop();
        lb.stop();
    }
}

#[test]
fn a_dial_that_waited_on_an_inbound_attempt_which_gave_up_dials_itself() {
    let (a, la, _ea) = node("a@127.0.0.1");
    let (b, lb, _eb) = node("b@127.0.0.1");
    // "b" starts a handshake with a, as a peer asking only for a's name
    // does, and holds it open past its status: a marks b's attempt.
    let mut asking = TcpStream::connect(la.local_addr()).expect("connect to a");
    let send_name = handshake::send_name(crate::erlang::flags::OFFERED, 7, "b@127.0.0.1");
    write_handshake(&mut asking, &send_name).expect("send name");
    asking
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(read_handshake(&mut asking).expect("status"), b"sok");
    // a's dial to b now waits on that attempt, which then ends unfinished.
    let a2 = a.clone();
    let to_b = lb.local_addr();
    let deadline = Instant::now() + Duration::from_secs(5);
    let dial = spawn("test-dial-ab", move || {
        a2.dial(to_b, "b@127.0.0.1", deadline)
    });
    // Held long enough for the dial to find the attempt (nothing outside
    // shows that it has), then given up.
    thread::sleep(Duration::from_millis(200));
    drop(asking);
    let link = dial.join().expect("a's dial").expect("a dials b itself");
    assert!(!link.inbound);
    let wait = Instant::now() + Duration::from_secs(5);
    while b.get("a@127.0.0.1").is_none() {
        assert!(Instant::now() < wait, "b never entered a's link");
        thread::sleep(Duration::from_millis(5));
    }
    a.close_all();
    b.close_all();
    la.stop();
    lb.stop();
}

#[test]
fn a_frame_flood_costs_no_reply() {
    // A frame that is not a call is handed to the round only; a peer that
    // sends a stream of them still gets its ping answered.
    fn flood(_: usize, mut s: TcpStream) {
        let junk = frame(b"p\x83\x6a\x83\x6a");
        let mut reader = s.try_clone().expect("clone");
        spawn("test-flood-reader", move || {
            let mut reply = Vec::new();
            while let Some(body) = read_frame(&mut reader) {
                if message::answer(&body, &mut reply) {
                    let _ = (&reader).write_all(&reply);
                }
            }
        });
        for _ in 0..20_000 {
            if s.write_all(&junk).is_err() {
                return;
            }
        }
    }
    let peer = Peer::start("f@127.0.0.1", Duration::ZERO, flood);
    let t = target("f@127.0.0.1", peer.addr);
    let mut prober = prober();
    let got = outcome(&mut prober, &t, Duration::from_secs(3));
    assert!(got.is_alive(), "{got:?}");
    prober.close();
}

#[test]
fn a_later_round_waits_for_a_new_dial_only_briefly_and_only_once() {
    let live = Peer::start("l@127.0.0.1", Duration::ZERO, answer);
    let slow = Peer::start("w@127.0.0.1", Duration::from_millis(300), answer);
    let hung = Peer::start("h@127.0.0.1", Duration::from_secs(30), answer);
    let hold = Duration::from_millis(50);
    let mut prober = prober().hold_dials_for(hold);
    let timeout = Duration::from_secs(2);
    // The first round waits for its dials up to the timeout: no line came
    // before it to keep pace with.
    let first = vec![
        target("l@127.0.0.1", live.addr),
        target("w@127.0.0.1", slow.addr),
    ];
    let results = prober.round(&first, timeout);
    assert!(results.iter().all(|(_, o)| o.is_alive()), "{results:?}");
    // A later round holds its line for a new dial `hold` at most.
    let mut targets = first.clone();
    targets.push(target("h@127.0.0.1", hung.addr));
    for round in 0..2 {
        let start = Instant::now();
        let results = prober.round(&targets, timeout);
        let took = start.elapsed();
        assert!(
            results[..2].iter().all(|(_, o)| o.is_alive()),
            "{results:?}"
        );
        assert_eq!(results[2].1, Outcome::Down(Reason::Timeout(Phase::Connect)));
        // The round that started the dial waits `hold`; the next one,
        // the dial still under way, not at all.
        let bound = if round == 0 { hold } else { Duration::ZERO };
        assert!(
            took >= bound && took < bound + Duration::from_millis(100),
            "round {round} took {took:?}"
        );
    }
    assert_eq!(hung.connections(), 1);
    prober.close();
}

#[test]
fn a_dial_hung_in_its_epmd_lookup_backs_off_and_keeps_its_reason() {
    // An EPMD that accepts and never answers.
    let epmd = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = epmd.local_addr().expect("addr").port();
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    spawn("test-silent-epmd", move || {
        let mut held = Vec::new();
        for stream in epmd.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    let me = Arc::new(Identity::new("me@127.0.0.1", "c"));
    let (links, events) = Links::new(me);
    let mut prober = Prober::new(links, events, port).hold_dials_for(Duration::from_millis(20));
    let t = Target {
        name: "e@127.0.0.1".parse().expect("name"),
        addr: None,
    };
    let timeout = Duration::from_millis(50);
    let got = outcome(&mut prober, &t, timeout);
    assert_eq!(got, Outcome::Down(Reason::Timeout(Phase::Connect)));
    // The dial gives up at its deadline (a second), in the EPMD lookup.
    thread::sleep(Duration::from_millis(1300));
    for round in 0..3 {
        let got = outcome(&mut prober, &t, timeout);
        assert!(
            matches!(got, Outcome::Down(Reason::NoAddress(ref why)) if why.contains("timed out")),
            "round {round}: {got:?}"
        );
        assert!(prober.backoff.contains_key(&t.name), "round {round}");
    }
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    prober.close();
}

#[test]
fn a_redial_after_a_quick_failure_is_waited_for_and_keeps_its_reason() {
    // A peer with another cookie that takes its time over each handshake.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    spawn("test-slow-cookie", move || {
        for stream in listener.incoming().flatten() {
            spawn("test-slow-cookie-conn", move || {
                thread::sleep(Duration::from_millis(150));
                let mut s = stream;
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let local = Local {
                    name: "o@127.0.0.1",
                    creation: 7,
                    cookie: "other",
                };
                let _ = handshake::accept(&mut s, &local, |_| Admit::Ok);
            });
        }
    });
    let t = target("o@127.0.0.1", addr);
    let mut prober = prober().hold_dials_for(Duration::from_millis(20));
    let bad_cookie = Outcome::Down(Reason::BadCookie);
    let timed = |prober: &mut Prober, timeout: Duration| {
        let start = Instant::now();
        let got = outcome(prober, &t, timeout);
        (got, start.elapsed())
    };
    // The first round waits for its dial.
    let (got, _) = timed(&mut prober, Duration::from_secs(1));
    assert_eq!(got, bad_cookie);
    // The peer answered at once: a redial is waited for past the hold, up
    // to the timeout, as it may find the peer up now.
    let (got, took) = timed(&mut prober, Duration::from_secs(1));
    assert_eq!(got, bad_cookie);
    assert!(took >= Duration::from_millis(140), "{took:?}");
    // A redial that outlasts the round is down for the last dial's reason,
    // and the next round, which did not start it, does not wait for it.
    let (got, took) = timed(&mut prober, Duration::from_millis(50));
    assert_eq!(got, bad_cookie);
    assert!(took < Duration::from_millis(120), "{took:?}");
    let (got, took) = timed(&mut prober, Duration::from_secs(1));
    assert_eq!(got, bad_cookie);
    assert!(took < Duration::from_millis(70), "{took:?}");
    prober.close();
}
