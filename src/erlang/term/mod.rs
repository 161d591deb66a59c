//! The few pieces of Erlang's external term format that a ping needs.
//!
//! Decoding is defensive: every length is checked against the bytes at hand,
//! nesting is bounded, and an unknown tag is an error rather than a guess. A
//! frame that fails to decode is skipped by its caller; it never ends a link.

#[cfg(test)]
mod tests;

use std::fmt;

use super::cursor::Cursor;

/// Every encoded term starts with this version byte.
pub(crate) const VERSION: u8 = 131;

/// The tag bytes of the external term format, named once for the wire.
pub(crate) mod tag {
    /// `SMALL_INTEGER_EXT`
    pub(crate) const SMALL_INTEGER: u8 = 97;
    /// `INTEGER_EXT`
    pub(crate) const INTEGER: u8 = 98;
    /// `FLOAT_EXT` (old, text)
    pub(crate) const FLOAT: u8 = 99;
    /// `ATOM_EXT` (Latin-1)
    pub(crate) const ATOM: u8 = 100;
    /// `SMALL_TUPLE_EXT`
    pub(crate) const SMALL_TUPLE: u8 = 104;
    /// `LARGE_TUPLE_EXT`
    pub(crate) const LARGE_TUPLE: u8 = 105;
    /// `NIL_EXT`
    pub(crate) const NIL: u8 = 106;
    /// `STRING_EXT`
    pub(crate) const STRING: u8 = 107;
    /// `LIST_EXT`
    pub(crate) const LIST: u8 = 108;
    /// `BINARY_EXT`
    pub(crate) const BINARY: u8 = 109;
    /// `SMALL_BIG_EXT`
    pub(crate) const SMALL_BIG: u8 = 110;
    /// `LARGE_BIG_EXT`
    pub(crate) const LARGE_BIG: u8 = 111;
    /// `SMALL_ATOM_EXT` (Latin-1)
    pub(crate) const SMALL_ATOM: u8 = 115;
    /// `MAP_EXT`
    pub(crate) const MAP: u8 = 116;
    /// `ATOM_UTF8_EXT`
    pub(crate) const ATOM_UTF8: u8 = 118;
    /// `SMALL_ATOM_UTF8_EXT`
    pub(crate) const SMALL_ATOM_UTF8: u8 = 119;
    /// `NEW_FLOAT_EXT`
    pub(crate) const NEW_FLOAT: u8 = 70;
    /// `BIT_BINARY_EXT`
    pub(crate) const BIT_BINARY: u8 = 77;
    /// `NEW_PID_EXT`: node, then 32-bit id, serial and creation.
    pub(crate) const NEW_PID: u8 = 88;
    /// `NEW_PORT_EXT`: node, 32-bit id, creation.
    pub(crate) const NEW_PORT: u8 = 89;
    /// `NEWER_REFERENCE_EXT`: word count, node, creation, words.
    pub(crate) const NEWER_REFERENCE: u8 = 90;
    /// `V4_PORT_EXT`: node, 64-bit id, creation (with `V4_NC`).
    pub(crate) const V4_PORT: u8 = 120;
}

use tag::*;

/// Deepest nesting accepted; real control messages are a few levels deep.
const MAX_DEPTH: usize = 32;

/// A decoded term. Only what pulse inspects has its own variant; anything else
/// that is well formed is kept as `Other` so a message can still be skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Term {
    /// An integer that fits in 64 bits.
    Int(i64),
    /// An atom.
    Atom(String),
    /// A tuple.
    Tuple(Vec<Term>),
    /// A list with its tail (`Nil` for a proper list).
    List(Vec<Term>, Box<Term>),
    /// The empty list.
    Nil,
    /// A binary.
    Binary(Vec<u8>),
    /// A process identifier (NEW_PID_EXT).
    Pid(Pid),
    /// A reference (NEWER_REFERENCE_EXT).
    Ref(Ref),
    /// A well-formed term pulse has no use for, kept as its encoded bytes.
    Other(Vec<u8>),
}

/// A process identifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pid {
    /// The node the process lives on.
    pub node: String,
    /// Process number.
    pub id: u32,
    /// Serial number.
    pub serial: u32,
    /// The node's creation.
    pub creation: u32,
}

/// A reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ref {
    /// The node that made the reference.
    pub node: String,
    /// The node's creation.
    pub creation: u32,
    /// The reference's words.
    pub ids: Vec<u32>,
}

/// Why a term could not be decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The bytes ended inside a term.
    Truncated,
    /// A tag pulse does not decode.
    UnknownTag(u8),
    /// Nested deeper than any real message.
    TooDeep,
    /// The version byte was missing.
    NoVersion,
    /// An atom that is not UTF-8.
    BadAtom,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "term truncated"),
            DecodeError::UnknownTag(t) => write!(f, "unknown term tag {t}"),
            DecodeError::TooDeep => write!(f, "term nested too deep"),
            DecodeError::NoVersion => write!(f, "term without version byte"),
            DecodeError::BadAtom => write!(f, "atom is not utf-8"),
        }
    }
}

impl Term {
    /// An atom from a string.
    pub(crate) fn atom(s: &str) -> Term {
        Term::Atom(s.to_string())
    }

    /// The atom's text, if this is an atom.
    pub(crate) fn as_atom(&self) -> Option<&str> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// The elements, if this is a tuple.
    pub(crate) fn as_tuple(&self) -> Option<&[Term]> {
        match self {
            Term::Tuple(t) => Some(t),
            _ => None,
        }
    }

    /// Appends the term, without the version byte, to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Term::Int(i) => {
                if (0..=255).contains(i) {
                    out.extend([SMALL_INTEGER, *i as u8]);
                } else if let Ok(small) = i32::try_from(*i) {
                    out.push(INTEGER);
                    out.extend(small.to_be_bytes());
                } else {
                    out.extend([SMALL_BIG, 8, u8::from(*i < 0)]);
                    out.extend(i.unsigned_abs().to_le_bytes());
                }
            }
            Term::Atom(a) => encode_atom(a, out),
            Term::Tuple(elems) => {
                if let Ok(n) = u8::try_from(elems.len()) {
                    out.extend([SMALL_TUPLE, n]);
                } else {
                    out.push(LARGE_TUPLE);
                    out.extend((elems.len() as u32).to_be_bytes());
                }
                elems.iter().for_each(|e| e.encode(out));
            }
            Term::List(elems, tail) => {
                out.push(LIST);
                out.extend((elems.len() as u32).to_be_bytes());
                elems.iter().for_each(|e| e.encode(out));
                tail.encode(out);
            }
            Term::Nil => out.push(NIL),
            Term::Binary(b) => {
                out.push(BINARY);
                out.extend((b.len() as u32).to_be_bytes());
                out.extend(b);
            }
            Term::Pid(p) => {
                out.push(NEW_PID);
                encode_atom(&p.node, out);
                out.extend(p.id.to_be_bytes());
                out.extend(p.serial.to_be_bytes());
                out.extend(p.creation.to_be_bytes());
            }
            Term::Ref(r) => {
                out.push(NEWER_REFERENCE);
                out.extend((r.ids.len() as u16).to_be_bytes());
                encode_atom(&r.node, out);
                out.extend(r.creation.to_be_bytes());
                r.ids.iter().for_each(|id| out.extend(id.to_be_bytes()));
            }
            Term::Other(raw) => out.extend(raw),
        }
    }

    /// Decodes one versioned term from the front of `bytes`, returning it and
    /// the number of bytes it used.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(Term, usize), DecodeError> {
        if bytes.first() != Some(&VERSION) {
            return Err(DecodeError::NoVersion);
        }
        let mut reader = Reader {
            cursor: Cursor::new(bytes),
        };
        reader.u8()?;
        let term = reader.term(0)?;
        Ok((term, reader.cursor.pos()))
    }
}

fn encode_atom(a: &str, out: &mut Vec<u8>) {
    if let Ok(n) = u8::try_from(a.len()) {
        out.extend([SMALL_ATOM_UTF8, n]);
    } else {
        // Atoms are at most 255 characters; a longer one cannot come from a
        // validated name, so it is cut at a character boundary.
        let mut end = a.len().min(u16::MAX as usize);
        while !a.is_char_boundary(end) {
            end -= 1;
        }
        out.push(ATOM_UTF8);
        out.extend((end as u16).to_be_bytes());
        out.extend(&a.as_bytes()[..end]);
        return;
    }
    out.extend(a.as_bytes());
}

struct Reader<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        self.cursor.take(n).ok_or(DecodeError::Truncated)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        self.cursor.u8().ok_or(DecodeError::Truncated)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.cursor.u16().ok_or(DecodeError::Truncated)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.cursor.u32().ok_or(DecodeError::Truncated)
    }

    /// A length that is about to count elements of at least one byte each:
    /// checking it against what is left stops a forged length from
    /// allocating more than the frame holds.
    fn count(&mut self, n: usize) -> Result<usize, DecodeError> {
        if n > self.cursor.left() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    fn atom_text(&mut self, len: usize) -> Result<String, DecodeError> {
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::BadAtom)
    }

    fn atom(&mut self) -> Result<String, DecodeError> {
        match self.u8()? {
            ATOM | ATOM_UTF8 => {
                let len = self.u16()? as usize;
                self.atom_text(len)
            }
            SMALL_ATOM | SMALL_ATOM_UTF8 => {
                let len = self.u8()? as usize;
                self.atom_text(len)
            }
            tag => Err(DecodeError::UnknownTag(tag)),
        }
    }

    fn elems(&mut self, n: usize, depth: usize) -> Result<Vec<Term>, DecodeError> {
        let n = self.count(n)?;
        (0..n).map(|_| self.term(depth + 1)).collect()
    }

    fn term(&mut self, depth: usize) -> Result<Term, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let start = self.cursor.pos();
        let tag = self.cursor.peek().ok_or(DecodeError::Truncated)?;
        match tag {
            ATOM | ATOM_UTF8 | SMALL_ATOM | SMALL_ATOM_UTF8 => return self.atom().map(Term::Atom),
            NEW_PID => {
                self.u8()?;
                let node = self.atom()?;
                let (id, serial, creation) = (self.u32()?, self.u32()?, self.u32()?);
                return Ok(Term::Pid(Pid {
                    node,
                    id,
                    serial,
                    creation,
                }));
            }
            NEWER_REFERENCE => {
                self.u8()?;
                let n = self.u16()? as usize;
                let node = self.atom()?;
                let creation = self.u32()?;
                let n = self.count(n)?;
                let ids = (0..n).map(|_| self.u32()).collect::<Result<_, _>>()?;
                return Ok(Term::Ref(Ref {
                    node,
                    creation,
                    ids,
                }));
            }
            _ => {}
        }
        self.u8()?;
        let term = match tag {
            SMALL_INTEGER => Term::Int(i64::from(self.u8()?)),
            INTEGER => Term::Int(i64::from(self.u32()? as i32)),
            SMALL_TUPLE => {
                let n = self.u8()? as usize;
                Term::Tuple(self.elems(n, depth)?)
            }
            LARGE_TUPLE => {
                let n = self.u32()? as usize;
                Term::Tuple(self.elems(n, depth)?)
            }
            NIL => Term::Nil,
            LIST => {
                let n = self.u32()? as usize;
                let elems = self.elems(n, depth)?;
                let tail = self.term(depth + 1)?;
                Term::List(elems, Box::new(tail))
            }
            BINARY => {
                let n = self.u32()? as usize;
                Term::Binary(self.take(n)?.to_vec())
            }
            // Well-formed terms pulse never inspects: skipped by their size.
            STRING => {
                let n = self.u16()? as usize;
                self.take(n)?;
                Term::Other(self.cursor.since(start).to_vec())
            }
            NEW_FLOAT => {
                self.take(8)?;
                Term::Other(self.cursor.since(start).to_vec())
            }
            FLOAT => {
                self.take(31)?;
                Term::Other(self.cursor.since(start).to_vec())
            }
            SMALL_BIG | LARGE_BIG => {
                let n = if tag == SMALL_BIG {
                    self.u8()? as usize
                } else {
                    self.u32()? as usize
                };
                self.take(n + 1)?;
                Term::Other(self.cursor.since(start).to_vec())
            }
            BIT_BINARY => {
                let n = self.u32()? as usize;
                self.take(n + 1)?;
                Term::Other(self.cursor.since(start).to_vec())
            }
            MAP => {
                let n = self.u32()? as usize;
                let pairs = self.count(n)?;
                for _ in 0..pairs {
                    self.term(depth + 1)?;
                    self.term(depth + 1)?;
                }
                Term::Other(self.cursor.since(start).to_vec())
            }
            NEW_PORT | V4_PORT => {
                self.atom()?;
                self.take(if tag == NEW_PORT { 8 } else { 12 })?;
                Term::Other(self.cursor.since(start).to_vec())
            }
            other => return Err(DecodeError::UnknownTag(other)),
        };
        Ok(term)
    }
}
