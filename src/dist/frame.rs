//! Length-prefixed frames on a stream.
//!
//! The handshake uses a 2-byte length, everything after it a 4-byte length,
//! where a zero length is a tick. [`FrameReader`] keeps partial frames
//! between reads, so a read timeout in the middle of a frame loses nothing.

use std::io::{self, Read, Write};

/// The largest frame a hidden pulse link accepts. A ping is under 200 bytes;
/// a larger frame is either a message pulse ignores or garbage, and the link
/// is dropped rather than buffer it.
pub const MAX_FRAME: usize = 64 * 1024;

/// A zero-length frame: the keep-alive of a distribution link.
pub const TICK: [u8; 4] = [0; 4];

/// Writes one handshake message with its 2-byte length.
pub fn write_handshake(stream: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u16::try_from(body.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "handshake message too long"))?;
    let mut buf = Vec::with_capacity(body.len() + 2);
    buf.extend(len.to_be_bytes());
    buf.extend(body);
    stream.write_all(&buf)
}

/// Reads one handshake message (its 2-byte length first).
pub fn read_handshake(stream: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut body)?;
    Ok(body)
}

/// Prefixes a distribution message body with its 4-byte length.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend((body.len() as u32).to_be_bytes());
    buf.extend(body);
    buf
}

/// Splits a stream of 4-byte-length frames, keeping what it has read of a
/// frame across calls.
#[derive(Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

/// What [`FrameReader::next_frame`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole, non-empty frame.
    Frame(Vec<u8>),
    /// A zero-length frame: the peer's keep-alive.
    Tick,
    /// More bytes are needed.
    Incomplete,
}

impl FrameReader {
    /// Takes the next whole frame out of the buffer. A length over
    /// [`MAX_FRAME`] is an error: the link cannot be trusted after it.
    pub fn next_frame(&mut self) -> io::Result<Next> {
        let Some(head) = self.buf.first_chunk::<4>() else {
            return Ok(Next::Incomplete);
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
            ));
        }
        if len == 0 {
            self.buf.drain(..4);
            return Ok(Next::Tick);
        }
        if self.buf.len() < 4 + len {
            return Ok(Next::Incomplete);
        }
        let frame = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Next::Frame(frame))
    }

    /// Reads once from `stream` into the buffer. End of stream is an error
    /// (`UnexpectedEof`): a link never closes cleanly mid-conversation.
    pub fn fill(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by peer",
            ));
        }
        self.buf.extend_from_slice(&chunk[..n]);
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
            reader.buf.push(b);
            loop {
                match reader.next_frame().expect("valid") {
                    Next::Frame(f) => got.push(f),
                    Next::Tick => got.push(b"tick".to_vec()),
                    Next::Incomplete => break,
                }
            }
        }
        assert_eq!(got, [&b"tick"[..], b"hello", b"tick", b"x"]);
    }

    #[test]
    fn oversized_length_is_an_error() {
        let mut reader = FrameReader {
            buf: vec![0xff, 0xff, 0xff, 0xff, 1],
        };
        assert!(reader.next_frame().is_err());
    }

    #[test]
    fn eof_is_an_error() {
        let mut reader = FrameReader::default();
        let err = reader.fill(&mut io::empty()).expect_err("eof");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
