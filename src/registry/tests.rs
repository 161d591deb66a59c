//! Tests of the registry scan and of our own entry.

use super::own::{Beat, ClaimError, OwnEntry};
use crate::error::Taken;
use std::time::Duration;

use super::entry::mix_version;
use super::*;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};
use std::time::SystemTime;

fn name(s: &str) -> NodeName {
    s.parse().expect("valid name")
}

fn record(n: &str, port: u16) -> Record {
    Record::new(
        name(n),
        SocketAddr::from(([127, 0, 0, 1], port)),
        SystemTime::now(),
    )
}

fn claim(dir: &Path, n: &str, port: u16) -> OwnEntry {
    OwnEntry::claim(dir, &record(n, port), |_| None).expect("claim")
}

fn names(reg: &mut Registry) -> Vec<String> {
    reg.scan()
        .expect("scan")
        .records
        .into_iter()
        .map(|r| r.name.to_string())
        .collect()
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("pulse-reg-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn our_entry_is_one_file_touched_in_place_and_removed_only_while_ours() {
    let tmp = TempDir::new("own");
    let dir = tmp.0.join("sub");
    let mut reg = Registry::new(&dir);
    let mut own = claim(&dir, "a@127.0.0.1", 1);
    let first = reg.scan().expect("scan").records;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].addr, record("a@127.0.0.1", 1).addr);
    let ino = fs::metadata(dir.join("a@127.0.0.1")).expect("meta").ino();
    // A heartbeat is a touch: same file, new version, no other name.
    let later = SystemTime::now() + Duration::from_secs(5);
    assert_eq!(own.beat(later).expect("beat"), Beat::Touched);
    let second = reg.scan().expect("scan").records;
    assert_ne!(first[0].version, second[0].version);
    assert_eq!(
        fs::metadata(dir.join("a@127.0.0.1")).expect("meta").ino(),
        ino
    );
    let listing: Vec<_> = fs::read_dir(&dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(listing, ["a@127.0.0.1"]);
    // Deleted, file or directory: made again by the next heartbeat.
    fs::remove_file(dir.join("a@127.0.0.1")).expect("delete");
    assert_eq!(own.beat(SystemTime::now()).expect("beat"), Beat::Recreated);
    fs::remove_dir_all(&dir).expect("delete dir");
    assert!(
        reg.scan().is_err(),
        "a missing directory is an error, not an empty registry"
    );
    assert_eq!(own.beat(SystemTime::now()).expect("beat"), Beat::Recreated);
    let scan = reg.scan().expect("scan");
    assert!(scan.dir_replaced);
    assert_eq!(scan.records.len(), 1);
    // Replaced by someone else's file: not touched, not removed.
    fs::remove_file(dir.join("a@127.0.0.1")).expect("delete");
    fs::write(dir.join("a@127.0.0.1"), "{{2026, 11, 24}, {3, 16, 5}}").expect("write");
    assert_eq!(own.beat(SystemTime::now()).expect("beat"), Beat::Replaced);
    own.remove().expect("remove");
    assert_eq!(names(&mut reg), ["a@127.0.0.1"]);
}

#[test]
fn a_claim_never_follows_a_planted_link_nor_reuses_a_file() {
    let tmp = TempDir::new("symlink");
    let dir = tmp.0.join("sync");
    fs::create_dir_all(&dir).expect("dir");
    let victim = tmp.0.join("victim");
    fs::write(&victim, "precious").expect("victim");
    std::os::unix::fs::symlink(&victim, dir.join("a@127.0.0.1")).expect("symlink");
    let mut own = claim(&dir, "a@127.0.0.1", 1);
    own.beat(SystemTime::now()).expect("beat");
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
    let meta = dir.join("a@127.0.0.1").symlink_metadata().expect("meta");
    assert!(meta.is_file() && meta.nlink() == 1);
    // A hard link to the victim under our name is replaced, not written.
    own.remove().expect("remove");
    fs::hard_link(&victim, dir.join("a@127.0.0.1")).expect("hard link");
    let own = claim(&dir, "a@127.0.0.1", 1);
    assert_eq!(fs::read_to_string(&victim).expect("victim"), "precious");
    own.remove().expect("remove");
}

#[test]
fn a_held_name_is_taken_and_two_claims_at_once_never_both_win() {
    let tmp = TempDir::new("race");
    let dir = tmp.0.clone();
    let held = claim(&dir, "a@127.0.0.1", 1);
    // A judge that would let anything go still sees the lock.
    let second = OwnEntry::claim(&dir, &record("a@127.0.0.1", 2), |h| {
        h.locked.then_some(Taken::Locked)
    });
    assert!(matches!(second, Err(ClaimError::Taken(Taken::Locked))));
    drop(held);
    for round in 0..20 {
        let n = format!("r{round}@127.0.0.1");
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = (0..2)
            .map(|i| {
                let (dir, n, barrier) = (dir.clone(), n.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    OwnEntry::claim(&dir, &record(&n, 10 + i), |h| {
                        h.locked.then_some(Taken::Locked)
                    })
                    .ok()
                })
            })
            .collect();
        let winners: Vec<OwnEntry> = racers
            .into_iter()
            .filter_map(|r| r.join().expect("racer"))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}");
    }
}

#[test]
fn a_directory_anyone_may_write_needs_the_sticky_bit() {
    let tmp = TempDir::new("sticky");
    let dir = tmp.0.join("open");
    fs::create_dir_all(&dir).expect("dir");
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = OwnEntry::claim(&dir, &record("a@127.0.0.1", 1), |_| None);
    assert!(
        matches!(err, Err(ClaimError::Io(ref e)) if e.to_string().contains("sticky")),
        "{err:?}"
    );
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).expect("chmod");
    claim(&dir, "a@127.0.0.1", 1).remove().expect("remove");
}

#[test]
fn any_content_under_a_node_name_is_a_foreign_entry() {
    let tmp = TempDir::new("foreign");
    let dir = &tmp.0;
    let mut reg = Registry::new(dir);
    fs::write(dir.join("e1@127.0.0.1"), "{{2026, 11, 24}, {3, 16, 5}}").expect("write");
    fs::write(dir.join("e2@127.0.0.1"), "").expect("write");
    fs::write(dir.join("e3@127.0.0.1"), [0xff, 0xfe, 0]).expect("write");
    fs::write(
        dir.join("e4@127.0.0.1"),
        "pulse 1\nname e4@127.0.0.1\naddr 127",
    )
    .expect("write");
    let scan = reg.scan().expect("scan").records;
    assert_eq!(scan.len(), 4);
    assert!(scan.iter().all(Record::is_foreign), "{scan:?}");
    // Rewritten in place (same inode, as the recipe's nodes do): the
    // version moves; the finished record is read.
    let first = scan[3].version;
    fs::write(
        dir.join("e4@127.0.0.1"),
        record("e4@127.0.0.1", 7).to_text(),
    )
    .expect("finish");
    let scan = reg.scan().expect("scan").records;
    assert_ne!(scan[3].version, first);
    assert_eq!(scan[3].addr, record("e4@127.0.0.1", 7).addr);
}

#[test]
fn what_cannot_be_a_node_entry_is_skipped() {
    let tmp = TempDir::new("hostile");
    let dir = &tmp.0;
    let mut reg = Registry::new(dir);
    let own = claim(dir, "good@127.0.0.1", 1);
    fs::write(dir.join("not-a-name"), "x").expect("write");
    fs::write(dir.join("big@127.0.0.1"), vec![b'1'; 10_000]).expect("write");
    fs::create_dir(dir.join("dir@127.0.0.1")).expect("dir");
    std::os::unix::fs::symlink("/dev/zero", dir.join("link@127.0.0.1")).expect("symlink");
    fs::write(dir.join("target"), "x").expect("write");
    fs::hard_link(dir.join("target"), dir.join("hard@127.0.0.1")).expect("hard link");
    let fifo = dir.join("fifo@127.0.0.1");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success());
    assert_eq!(made.ok(), Some(true), "mkfifo");
    for _ in 0..2 {
        assert_eq!(names(&mut reg), ["good@127.0.0.1"]);
    }
    assert_eq!(reg.warned.len(), 7, "{:?}", reg.warned);
    // Seven new at once: three named, then one summary; none the second time.
    let warnings = reg.take_warnings();
    assert_eq!(warnings.len(), 4, "{warnings:?}");
    assert!(
        warnings[3].contains("skipping 4 more entries"),
        "{warnings:?}"
    );
    assert!(reg.take_warnings().is_empty());
    // A new one alone is named.
    fs::create_dir(dir.join("dir2@127.0.0.1")).expect("dir");
    names(&mut reg);
    let warnings = reg.take_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("'dir2@127.0.0.1': not a regular file (a directory)"));
    assert!(read_untrusted(&fifo).is_err());
    own.remove().expect("remove");
}

#[test]
fn junk_never_crowds_out_a_node() {
    let tmp = TempDir::new("junk");
    let dir = &tmp.0;
    for i in 0..MAX_ENTRIES + 500 {
        fs::write(dir.join(format!("junk-{i}")), "").expect("junk");
    }
    let own = claim(dir, "zz@127.0.0.1", 1);
    let mut reg = Registry::new(dir);
    assert_eq!(names(&mut reg), ["zz@127.0.0.1"]);
    assert_eq!(reg.warned.len(), MAX_ENTRIES + 500);
    assert_eq!(reg.take_warnings().len(), 4, "three named and a summary");
    assert_eq!(names(&mut reg), ["zz@127.0.0.1"]);
    assert!(reg.take_warnings().is_empty());
    own.remove().expect("remove");
}

#[test]
fn an_expired_entry_is_removed_only_if_unchanged() {
    let tmp = TempDir::new("expire");
    let dir = &tmp.0;
    let mut reg = Registry::new(dir);
    fs::write(dir.join("e1@127.0.0.1"), "1").expect("write");
    let seen = reg.scan().expect("scan").records.remove(0);
    // Its node came back and wrote again: not removed.
    fs::write(dir.join("e1@127.0.0.1"), "22").expect("write");
    reg.remove_if_unchanged(&seen).expect("remove");
    let now = reg.scan().expect("scan").records.remove(0);
    reg.remove_if_unchanged(&now).expect("remove");
    assert!(names(&mut reg).is_empty());
    reg.remove_if_unchanged(&now).expect("gone already is fine");
}

#[test]
fn a_restarted_node_is_read_afresh_when_its_file_changes_or_it_is_forgotten() {
    let tmp = TempDir::new("restart");
    let dir = &tmp.0;
    let mut reg = Registry::new(dir);
    let addr = |reg: &mut Registry| reg.scan().expect("scan").records[0].addr;
    let first = claim(dir, "a@127.0.0.1", 4001);
    assert_eq!(addr(&mut reg), record("a@127.0.0.1", 4001).addr);
    // Restarted at a port of another length: another size, read at once.
    first.remove().expect("leave");
    let second = claim(dir, "a@127.0.0.1", 40020);
    assert_eq!(addr(&mut reg), record("a@127.0.0.1", 40020).addr);
    // Restarted at a port of the same length: the file system may hand out
    // the same inode again, so the size and inode may not tell. A direct
    // read does, and so does the scan after `forget` (the round does both
    // when the old address refuses).
    second.remove().expect("leave");
    let _third = claim(dir, "a@127.0.0.1", 40030);
    let read = reg.entry(&name("a@127.0.0.1")).expect("read");
    assert_eq!(read.addr, record("a@127.0.0.1", 40030).addr);
    reg.forget(&name("a@127.0.0.1"));
    assert_eq!(addr(&mut reg), record("a@127.0.0.1", 40030).addr);
}

#[test]
fn a_scan_lists_what_is_there_now_in_order_and_reads_a_returning_entry_afresh() {
    let tmp = TempDir::new("order");
    let dir = &tmp.0;
    let mut reg = Registry::new(dir);
    let text = record("b@127.0.0.1", 4000).to_text();
    // As long as the record that comes back later: its size cannot tell.
    let filler = "x".repeat(text.len());
    for n in ["c@127.0.0.1", "a@127.0.0.1", "d@127.0.0.1", "b@127.0.0.1"] {
        fs::write(dir.join(n), &filler).expect("write");
    }
    assert_eq!(
        names(&mut reg),
        ["a@127.0.0.1", "b@127.0.0.1", "c@127.0.0.1", "d@127.0.0.1"]
    );
    fs::remove_file(dir.join("b@127.0.0.1")).expect("remove");
    fs::write(dir.join("aa@127.0.0.1"), "x").expect("write");
    assert_eq!(
        names(&mut reg),
        ["a@127.0.0.1", "aa@127.0.0.1", "c@127.0.0.1", "d@127.0.0.1"]
    );
    assert_eq!(reg.cache.len(), 4, "what vanished is forgotten");
    // Back within the reread time, maybe on the same inode, same size.
    fs::write(dir.join("b@127.0.0.1"), &text).expect("write");
    let scan = reg.scan().expect("scan").records;
    assert_eq!(scan[2].name, name("b@127.0.0.1"));
    assert_eq!(scan[2].addr, record("b@127.0.0.1", 4000).addr);
}

#[test]
fn a_version_changes_with_any_of_inode_time_and_size() {
    // Neighbouring values of each, as a touch, a rewrite or a restart makes.
    let epoch_ns = 1_795_474_399_000_000_000;
    let times: Vec<u64> = (0..20)
        .map(|i| epoch_ns + i)
        .chain((1..21).map(|i| epoch_ns + i * 1_000_000_000))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for ino in 1000..1040 {
        for &mtime_ns in &times {
            for len in 0..40 {
                assert!(
                    seen.insert(mix_version(ino, mtime_ns, len)),
                    "collision at {ino} {mtime_ns} {len}"
                );
            }
        }
    }
}
