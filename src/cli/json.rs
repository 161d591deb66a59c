//! A tiny JSON writer for `status --json` and `watch --json`: a handful of
//! fields does not need a serialisation crate, only strings escaped right.
//! Node names and reasons may come from the network or the shared log, so
//! every string goes through [`string`].

use std::fmt::Write;

/// Appends `s` as a JSON string literal: quotes, backslashes and every
/// control character escaped, so any input gives valid JSON.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // U+2028 and U+2029 are valid JSON but break JavaScript readers.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends a string, or `null` when there is none.
pub(crate) fn opt_string(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => string(out, s),
        None => out.push_str("null"),
    }
}

/// Builds one JSON object field by field.
pub(crate) struct Object<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens an object at the end of `out`.
    pub(crate) fn new(out: &'a mut String) -> Object<'a> {
        out.push('{');
        Object { out, empty: true }
    }

    /// Starts a field and returns the buffer to write its value into.
    pub(crate) fn key(&mut self, key: &str) -> &mut String {
        if !self.empty {
            self.out.push_str(", ");
        }
        self.empty = false;
        string(self.out, key);
        self.out.push_str(": ");
        self.out
    }

    /// A string field.
    pub(crate) fn str(&mut self, key: &str, value: &str) -> &mut Self {
        string(self.key(key), value);
        self
    }

    /// A string field that may be `null`.
    pub(crate) fn opt_str(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        opt_string(self.key(key), value);
        self
    }

    /// A field whose value is already JSON: a number, `true`, `null`, …
    pub(crate) fn raw(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = write!(self.key(key), "{value}");
        self
    }

    /// Closes the object.
    pub(crate) fn end(self) {
        self.out.push('}');
    }
}

/// A number field that may be missing: the value, or `null`.
pub(crate) fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "null".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        string(&mut out, s);
        out
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(quoted("a@h"), "\"a@h\"");
        assert_eq!(quoted("say \"hi\"\\"), r#""say \"hi\"\\""#);
        assert_eq!(quoted("a\nb\tc\r"), r#""a\nb\tc\r""#);
        assert_eq!(
            quoted("\u{1b}[31m\u{0}\u{7f}"),
            r#""\u001b[31m\u0000\u007f""#
        );
        assert_eq!(quoted("é ✓ \u{2028}"), "\"é ✓ \\u2028\"");
    }

    #[test]
    fn objects_separate_their_fields() {
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.str("name", "a\"b")
            .raw("alive", true)
            .opt_str("reason", None)
            .raw("rtt_ms", opt(Some(1.5)))
            .raw("age_ms", opt::<u64>(None));
        o.end();
        assert_eq!(
            out,
            r#"{"name": "a\"b", "alive": true, "reason": null, "rtt_ms": 1.5, "age_ms": null}"#
        );
        let mut out = String::new();
        Object::new(&mut out).end();
        assert_eq!(out, "{}");
    }
}
