//! One reader for every byte layout of the wire: terms, messages and
//! handshake messages. It borrows the bytes, checks every length against
//! what is left, and answers `None` instead of reading past the end, so a
//! forged length can never panic or allocate.

/// A position in a borrowed byte slice.
#[derive(Clone, Debug)]
pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    /// How many bytes have been read.
    pub(super) fn pos(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub(super) fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Whether every byte has been read.
    pub(super) fn at_end(&self) -> bool {
        self.left() == 0
    }

    /// The next byte, without taking it.
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// The bytes read since position `start`.
    pub(super) fn since(&self, start: usize) -> &'a [u8] {
        &self.bytes[start.min(self.pos)..self.pos]
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    /// Everything that is left.
    pub(super) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        rest
    }

    /// Takes exactly `want`, or nothing.
    pub(super) fn expect(&mut self, want: &[u8]) -> Option<()> {
        let at = self.pos;
        if self.take(want.len())? == want {
            Some(())
        } else {
            self.pos = at;
            None
        }
    }

    /// One byte.
    pub(super) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    /// A big-endian `u16`.
    pub(super) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    pub(super) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    pub(super) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_and_stops_at_the_end() {
        let mut c = Cursor::new(&[1, 0, 2, 0, 0, 0, 3, 9]);
        assert_eq!(c.u8(), Some(1));
        assert_eq!(c.u16(), Some(2));
        assert_eq!(c.u32(), Some(3));
        assert_eq!(c.u16(), None);
        assert_eq!(c.pos(), 7, "a short read takes nothing");
        assert_eq!(c.expect(&[8]), None);
        assert_eq!(c.expect(&[9]), Some(()));
        assert!(c.at_end());
        assert_eq!(c.take(usize::MAX), None);
        let mut c = Cursor::new(&[0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(c.u64(), Some(256));
        assert_eq!(c.since(2), &[0, 0, 0, 0, 1, 0]);
    }
}
