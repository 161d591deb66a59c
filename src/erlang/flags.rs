//! The distribution capability flags, each named once, and the sets pulse
//! offers and insists on.
//!
//! Values and sets follow `erts/emulator/beam/dist.h` of current OTP: from
//! OTP 26 on, `V4_NC` and `UNLINK_ID` join OTP 25's mandatory set, and a node
//! that lacks any mandatory flag is refused at the handshake. pulse offers
//! that set, and asks of a peer only what it needs to read the peer's
//! messages (OTP 25's set), so older pulse builds still reach it.

/// The node is visible (not hidden); pulse never sets it.
#[cfg(test)] // left out on purpose; the tests check it stays out
pub(crate) const PUBLISHED: u64 = 0x01;
/// Atom cache in message headers (old style).
#[cfg(test)] // left out on purpose; the tests check it stays out
pub(crate) const ATOM_CACHE: u64 = 0x02;
/// References with more than one word.
pub(crate) const EXTENDED_REFERENCES: u64 = 0x04;
/// The node answers process monitors (`MONITOR_P`, `DEMONITOR_P`).
pub(crate) const DIST_MONITOR: u64 = 0x08;
/// Fun tags.
pub(crate) const FUN_TAGS: u64 = 0x10;
/// The node answers monitors on registered names.
pub(crate) const DIST_MONITOR_NAME: u64 = 0x20;
/// New fun tags.
pub(crate) const NEW_FUN_TAGS: u64 = 0x80;
/// Pids and ports with extended fields.
pub(crate) const EXTENDED_PIDS_PORTS: u64 = 0x100;
/// Export tags.
pub(crate) const EXPORT_PTR_TAG: u64 = 0x200;
/// Bit binaries.
pub(crate) const BIT_BINARIES: u64 = 0x400;
/// IEEE floats.
pub(crate) const NEW_FLOATS: u64 = 0x800;
/// Atom cache in distribution headers.
#[cfg(test)] // left out on purpose; the tests check it stays out
pub(crate) const DIST_HDR_ATOM_CACHE: u64 = 0x2000;
/// UTF-8 atoms.
pub(crate) const UTF8_ATOMS: u64 = 0x1_0000;
/// Maps.
pub(crate) const MAP_TAG: u64 = 0x2_0000;
/// 32-bit creations.
pub(crate) const BIG_CREATION: u64 = 0x4_0000;
/// Messages split into fragments.
#[cfg(test)] // left out on purpose; the tests check it stays out
pub(crate) const FRAGMENTS: u64 = 0x80_0000;
/// The version-6 handshake (OTP 23).
pub(crate) const HANDSHAKE_23: u64 = 0x100_0000;
/// The new link protocol: `UNLINK_ID` and `UNLINK_ID_ACK`.
pub(crate) const UNLINK_ID: u64 = 0x200_0000;
/// Shorthand a peer may send for every flag OTP 25 made mandatory.
pub(crate) const MANDATORY_25_DIGEST: u64 = 0x400_0000;
/// Spawn requests (`SPAWN_REQUEST`, `SPAWN_REPLY`), for `erpc`.
#[cfg(test)] // left out on purpose; the tests check it stays out
pub(crate) const SPAWN: u64 = 0x1 << 32;
/// Process aliases (`ALIAS_SEND`), and replies to `[alias | Ref]` tags.
#[cfg(test)] // left out on purpose; the tests check it stays out
pub(crate) const ALIAS: u64 = 0x8 << 32;
/// Alternate activation signals (`ALTACT_SIG_SEND`, OTP 28): priority and
/// alias messages.
#[cfg(test)] // left out on purpose; the tests check it stays out
pub(crate) const ALTACT_SIG: u64 = 0x20 << 32;
/// Node container version 4: full 32-bit pid fields, 64-bit port numbers
/// (`V4_PORT_EXT`), references of up to 5 words.
pub(crate) const V4_NC: u64 = 0x4 << 32;

/// What OTP 25 made mandatory.
pub(crate) const MANDATORY_25: u64 = EXTENDED_REFERENCES
    | FUN_TAGS
    | EXTENDED_PIDS_PORTS
    | UTF8_ATOMS
    | NEW_FUN_TAGS
    | BIG_CREATION
    | NEW_FLOATS
    | MAP_TAG
    | EXPORT_PTR_TAG
    | BIT_BINARIES
    | HANDSHAKE_23;

/// What OTP 26, 27 and 28 make mandatory.
pub(crate) const MANDATORY: u64 = MANDATORY_25 | V4_NC | UNLINK_ID;

/// What pulse insists on: enough to read whatever the peer sends. Without
/// `V4_NC` a peer sends the smaller encodings, without `UNLINK_ID` the old
/// unlink, which pulse drops; both are read fine.
pub(crate) const REQUIRED: u64 = MANDATORY_25;

/// What pulse offers: the mandatory set plus monitors (so a monitor on a
/// process pulse lacks fails at once with `noproc`). `PUBLISHED` is left
/// out so real nodes treat pulse as hidden; atom caches and fragments are
/// left out so every frame is a plain `'p'` frame; `SPAWN` is left out so
/// `erpc` fails at once with `notsup`; `ALIAS` and `ALTACT_SIG` are left out
/// so a peer never addresses pulse by alias, which is why pulse's own calls
/// carry a plain reference as their tag (see `message`).
pub(crate) const OFFERED: u64 = MANDATORY | DIST_MONITOR | DIST_MONITOR_NAME;

/// The flags as the peer meant them: the OTP 25 shorthand expanded.
pub(crate) fn expand(flags: u64) -> u64 {
    if flags & MANDATORY_25_DIGEST != 0 {
        flags | MANDATORY_25
    } else {
        flags
    }
}

/// The names of the flags of `set` that `flags` lacks, for a one-line
/// error.
pub(crate) fn missing(set: u64, flags: u64) -> Vec<&'static str> {
    const NAMES: [(u64, &str); 13] = [
        (EXTENDED_REFERENCES, "EXTENDED_REFERENCES"),
        (FUN_TAGS, "FUN_TAGS"),
        (NEW_FUN_TAGS, "NEW_FUN_TAGS"),
        (EXTENDED_PIDS_PORTS, "EXTENDED_PIDS_PORTS"),
        (EXPORT_PTR_TAG, "EXPORT_PTR_TAG"),
        (BIT_BINARIES, "BIT_BINARIES"),
        (NEW_FLOATS, "NEW_FLOATS"),
        (UTF8_ATOMS, "UTF8_ATOMS"),
        (MAP_TAG, "MAP_TAG"),
        (BIG_CREATION, "BIG_CREATION"),
        (HANDSHAKE_23, "HANDSHAKE_23"),
        (UNLINK_ID, "UNLINK_ID"),
        (V4_NC, "V4_NC"),
    ];
    let flags = expand(flags);
    NAMES
        .iter()
        .filter(|(bit, _)| set & bit != 0 && flags & bit == 0)
        .map(|&(_, name)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sets_have_the_values_of_dist_h() {
        // DFLAG_DIST_MANDATORY_25: what pulse offered before, seen on the wire.
        assert_eq!(MANDATORY_25, 0x0107_0F94);
        // DFLAG_DIST_MANDATORY_26 = V4_NC | UNLINK_ID.
        assert_eq!(MANDATORY & !MANDATORY_25, 0x4_0200_0000);
        assert_eq!(OFFERED, 0x4_0307_0FBC);
        assert_eq!(
            OFFERED
                & (PUBLISHED
                    | ATOM_CACHE
                    | DIST_HDR_ATOM_CACHE
                    | FRAGMENTS
                    | SPAWN
                    | ALIAS
                    | ALTACT_SIG),
            0
        );
    }

    #[test]
    fn missing_names_every_absent_flag_of_a_set() {
        assert!(missing(MANDATORY, OFFERED).is_empty());
        assert_eq!(missing(MANDATORY, MANDATORY_25), ["UNLINK_ID", "V4_NC"]);
        assert!(missing(REQUIRED, MANDATORY_25).is_empty());
        // The OTP 25 shorthand stands for the OTP 25 set only.
        assert!(missing(MANDATORY, MANDATORY_25_DIGEST | V4_NC | UNLINK_ID).is_empty());
        assert!(missing(REQUIRED, MANDATORY_25_DIGEST).is_empty());
        assert_eq!(
            missing(REQUIRED, REQUIRED & !BIG_CREATION),
            ["BIG_CREATION"]
        );
        assert_eq!(missing(MANDATORY, 0).len(), 13);
        assert_eq!(missing(REQUIRED, 0).len(), 11);
    }
}
