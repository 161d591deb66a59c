//! Length-prefixed frames on a stream.
//!
//! The handshake uses a 2-byte length, everything after it a 4-byte length,
//! where a zero length is a tick. [`FrameReader`] keeps partial frames
//! between reads, so a read timeout in the middle of a frame loses nothing.

use std::io::{self, Read, Write};

/// The largest frame a hidden pulse link accepts. A ping is under 200 bytes;
/// a larger frame is either a message pulse ignores or garbage, and the link
/// is dropped rather than buffer it.
pub(crate) const MAX_FRAME: usize = 64 * 1024;

/// A zero-length frame: the keep-alive of a distribution link.
pub(crate) const TICK: [u8; 4] = [0; 4];

/// Writes one handshake message with its 2-byte length.
pub(crate) fn write_handshake(stream: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u16::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "handshake message too long"))?;
    let mut buf = Vec::with_capacity(body.len() + 2);
    buf.extend(len.to_be_bytes());
    buf.extend(body);
    stream.write_all(&buf)
}

/// Reads one handshake message (its 2-byte length first).
pub(crate) fn read_handshake(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// Prefixes a distribution message body with its 4-byte length.
pub(crate) fn frame(body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend((body.len() as u32).to_be_bytes());
    buf.extend(body);
    buf
}

/// Splits a stream of 4-byte-length frames, keeping what it has read of a
/// frame across calls. Bytes are read straight into one buffer that is
/// reused for the link's life, and a frame is lent out of it, so a steady
/// stream of pings allocates nothing here.
#[derive(Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    /// The unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

/// Room kept free for one read; a ping and its reply are under 200 bytes.
const READ_ROOM: usize = 512;

/// What [`FrameReader::next_frame`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<'a> {
    /// A whole, non-empty frame, valid until the next read.
    Frame(&'a [u8]),
    /// A zero-length frame: the peer's keep-alive.
    Tick,
    /// More bytes are needed.
    Incomplete,
}

impl FrameReader {
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Takes the next whole frame out of the buffer. A length over
    /// [`MAX_FRAME`] is an error: the link cannot be trusted after it.
    pub(crate) fn next_frame(&mut self) -> io::Result<Next<'_>> {
        let pending = &self.buf[self.start..self.end];
        let Some(head) = pending.first_chunk::<4>() else {
            return Ok(Next::Incomplete);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
            ));
        }
        if pending.len() < 4 + len {
            return Ok(Next::Incomplete);
        }
        let body = self.start + 4..self.start + 4 + len;
        // Consuming moves only the indices: the bytes stay until the next
        // `fill`.
        self.consume(4 + len);
        Ok(if len == 0 {
            Next::Tick
        } else {
            Next::Frame(&self.buf[body])
        })
    }

    /// Reads once from `stream` into the buffer. End of stream is an error
    /// (`UnexpectedEof`): a link never closes cleanly mid-conversation.
    pub(crate) fn fill(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        if self.buf.len() - self.end < READ_ROOM {
            // Move the unread bytes to the front, and grow only if a frame
            // longer than the buffer is on its way.
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
            if self.buf.len() - self.end < READ_ROOM {
                self.buf.resize(self.end + READ_ROOM, 0);
            }
        }
        let n = stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by peer",
            ));
        }
        self.end += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads_with_ticks_between() {
        let mut wire = Vec::new();
        wire.extend(TICK);
        wire.extend(frame(b"hello"));
        wire.extend(TICK);
        wire.extend(frame(b"x"));
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        // Feed one byte at a time: the worst a socket can do.
        for b in wire {
            reader.fill(&mut &[b][..]).expect("one byte");
            loop {
                match reader.next_frame().expect("valid") {
                    Next::Frame(f) => got.push(f.to_vec()),
                    Next::Tick => got.push(b"tick".to_vec()),
                    Next::Incomplete => break,
                }
            }
        }
        assert_eq!(got, [&b"tick"[..], b"hello", b"tick", b"x"]);
    }

    #[test]
    fn a_frame_longer_than_the_buffer_grows_it() {
        let big = vec![7u8; 3000];
        let mut wire = frame(&big);
        wire.extend(frame(b"after"));
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            // At most 100 bytes a read, as a slow socket would give them.
            let (now, later) = rest.split_at(rest.len().min(100));
            reader.fill(&mut &now[..]).expect("bytes");
            rest = later;
            while let Next::Frame(f) = reader.next_frame().expect("valid") {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, vec![big, b"after".to_vec()]);
    }

    #[test]
    fn oversized_length_is_an_error() {
        let mut reader = FrameReader::default();
        reader
            .fill(&mut &[0xff, 0xff, 0xff, 0xff, 1][..])
            .expect("bytes");
        assert!(reader.next_frame().is_err());
    }

    #[test]
    fn eof_is_an_error() {
        let mut reader = FrameReader::default();
        let err = reader.fill(&mut io::empty()).expect_err("eof");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
