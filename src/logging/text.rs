//! Text from outside the process made safe for one log line.
//!
//! Handshake names, registry file names and contents, EPMD replies and error
//! reasons come from peers we do not trust. A newline in them would let a
//! peer forge a whole log line, and an escape sequence could rewrite a
//! terminal, so control characters are written as visible escapes and every
//! piece of outside text is bounded in length.

use std::fmt::Write;

/// Longest piece of outside text (a node name, a reason) put in a line.
/// Node names are at most 255 bytes of alive name plus a host.
pub(crate) const MAX_FIELD: usize = 512;

/// Whether `c` must not reach a log line as it is: C0 and C1 controls and
/// DEL, and the Unicode line separators and bidirectional overrides that
/// some viewers act on.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Appends `text` to `out` with every unsafe character escaped (`\n`, `\r`,
/// `\t`, `\e`, else `\u{..}`), keeping at most `max` bytes of the input; a
/// cut is marked with how much was left out.
pub(crate) fn push_escaped(out: &mut String, text: &str, max: usize) {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.reserve(end);
    let mut rest = &text[..end];
    // Printable ASCII is always safe: runs of it are copied whole, and
    // only the characters between them are looked at one by one.
    while let Some(at) = rest.bytes().position(|b| !(b' '..=b'~').contains(&b)) {
        out.push_str(&rest[..at]);
        // `at` is a character boundary: everything before it is ASCII.
        let Some(c) = rest[at..].chars().next() else {
            break;
        };
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
        rest = &rest[at + c.len_utf8()..];
    }
    out.push_str(rest);
    if end < text.len() {
        let _ = write!(out, "… ({} more bytes)", text.len() - end);
    }
}

/// `text` escaped and bounded to [`MAX_FIELD`] bytes: for outside text
/// before it goes into a message.
pub(crate) fn field(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_FIELD) + 8);
    push_escaped(&mut out, text, MAX_FIELD);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str, max: usize) -> String {
        let mut out = String::new();
        push_escaped(&mut out, text, max);
        out
    }

    #[test]
    fn controls_are_visible_and_plain_text_is_untouched() {
        assert_eq!(
            escaped("a1@127.0.0.1[\"x\": true] ünï", 100),
            "a1@127.0.0.1[\"x\": true] ünï"
        );
        assert_eq!(
            escaped("x\n12:00:00.000 [info] forged\r\t", 100),
            "x\\n12:00:00.000 [info] forged\\r\\t"
        );
        assert_eq!(escaped("\u{1b}[2J\u{7}", 100), "\\e[2J\\u{7}");
        assert_eq!(
            escaped("\u{85}\u{2028}\u{202e}", 100),
            "\\u{85}\\u{2028}\\u{202e}"
        );
        assert!(!escaped("\0\u{7f}\u{9b}", 100).chars().any(is_unsafe));
        // Escapes at either end of a run, next to other non-ASCII text.
        assert_eq!(
            escaped("\tä\u{7f}b\u{2066}ü\n", 100),
            "\\tä\\u{7f}b\\u{2066}ü\\n"
        );
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(escaped("abcdef", 4), "abcd… (2 more bytes)");
        // 'é' is two bytes: a cut inside it backs off to before it.
        assert_eq!(escaped("aéb", 2), "a… (3 more bytes)");
        assert_eq!(
            field(&"n".repeat(100_000)).len(),
            MAX_FIELD + "… (99488 more bytes)".len()
        );
    }
}
