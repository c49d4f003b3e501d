//! Arbitrary bytes on an actor's control channel, in both directions.
//!
//! The harness reads what an actor writes (`Hello`, then `Reply`s) with
//! `channel::Channel::recv_within`; an actor reads `Envelope`s (a sequence
//! number and a `Request`). The bytes are written into a real pipe (or a
//! Unix socket pair, as for forked and spawned actors), in chunks the input
//! chooses, and read back through `Channel` after each chunk, exactly as
//! the driver does. No lock call is made and no process is started: the
//! actor's own loop (`actor::serve`) performs each request it decodes, so it
//! is not called; its decoding step, `serde_json::from_slice::<Envelope>` of
//! one line, is the one checked here.
//!
//! Input: byte 0 chooses the message type (bits 0-2: 0 or 5 the driver's
//! `FromActor`, 1 `Reply`, 2 `Hello`, 3 or 6 `Envelope`, 4 or 7 `Request`),
//! the transport (bit 3: a socket pair, else a pipe) and whether the writer
//! closes its end at the end (bit 4); byte 1 is the chunk size (0: 4096);
//! the rest is the stream (seeds: fuzz/seeds/actor_protocol).
//!
//! Properties, besides "no panic":
//! - termination: every receive returns at once (a zero wait), and the
//!   number of receives is bounded by the lines and chunks written;
//! - framing: the k-th message received is the k-th newline-terminated line
//!   of the stream, decoded (or `Garbled`, with at most 200 characters of
//!   the line, exactly when the line does not decode); a trailing partial
//!   line is never delivered; at end of file, `Closed`; no `TooLong` or
//!   I/O error for a stream this short;
//! - round trip: every message received, sent back with `Channel::send`
//!   through another pipe, arrives equal (so no encoded message contains a
//!   raw newline, and decoding accepts what encoding makes);
//! - bounded memory: once per process, a line over `MAX_LINE` is refused
//!   with `TooLong` and one a byte under it is accepted (libFuzzer's
//!   `-rss_limit_mb`/`-malloc_limit_mb` bound the rest).

#![no_main]

use std::fmt::Debug;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Once;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lockcheck::actor::channel::{Channel, ChannelError};
use lockcheck::actor::protocol::{Envelope, FromActor, Hello, Reply, Request, MAX_LINE};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Pipes are 64 KiB by default: a chunk this size into a drained pipe never blocks.
const MAX_CHUNK: usize = 4096;
/// Longer inputs are skipped (far beyond libFuzzer's `-max_len`): every
/// message then fits, encoded again, in one pipe.
const MAX_STREAM: usize = 4 * MAX_CHUNK;

fn pipe() -> (OwnedFd, OwnedFd) {
    let (r, w) = std::io::pipe().expect("pipe");
    (r.into(), w.into())
}

/// A writer end and the `Channel` reading what it writes (through a pipe,
/// or a Unix socket pair as for forked and spawned actors).
struct Link {
    writer: Option<Box<dyn Write>>,
    chan: Channel,
}

impl Link {
    fn new(socket: bool) -> Link {
        // What the channel sends goes to a pipe nobody reads.
        let (_, sink) = pipe();
        if socket {
            let (ours, theirs) = UnixStream::pair().expect("socketpair");
            Link {
                chan: Channel::new(theirs.into(), sink).expect("channel"),
                writer: Some(Box::new(ours)),
            }
        } else {
            let (r, w) = pipe();
            Link {
                chan: Channel::new(r, sink).expect("channel"),
                writer: Some(Box::new(std::fs::File::from(w))),
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let w = self.writer.as_mut().expect("writer open");
        w.write_all(bytes).expect("write");
    }
}

/// Two channels on one pipe: what `tx` sends, `rx` receives.
struct Echo {
    tx: Channel,
    rx: Channel,
}

impl Echo {
    fn new() -> Echo {
        let (r, w) = pipe();
        let (unread, _) = pipe();
        let (_, sink) = pipe();
        Echo {
            tx: Channel::new(unread, w).expect("channel"),
            rx: Channel::new(r, sink).expect("channel"),
        }
    }

    /// `v` through `Channel::send` and back through `recv_within`: unchanged.
    fn round_trip<T>(&mut self, v: &T)
    where
        T: DeserializeOwned + Serialize + PartialEq + Debug,
    {
        let deadline = Instant::now() + Duration::from_secs(5);
        self.tx.send(v, deadline).expect("send");
        match self.rx.recv_within::<T>(Duration::ZERO) {
            Ok(Some(back)) => {
                assert_eq!(
                    &back, v,
                    "a message changed on its way through send and recv"
                )
            }
            other => panic!("a message sent did not come back: {other:?} for {v:?}"),
        }
        assert!(
            matches!(self.rx.recv_within::<T>(Duration::ZERO), Ok(None)),
            "one message sent, more received"
        );
    }
}

/// Lines that a reader must deliver: each newline-terminated line of the stream.
fn complete_lines(stream: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    lines.pop(); // after the last newline: a partial line (or nothing)
    lines
}

/// What one receive gave, in a form to compare with the expected decoding.
#[derive(Debug, PartialEq)]
enum Got<T> {
    Msg(T),
    Garbled,
}

/// Receive everything available now (zero wait), checking each message
/// against the next line written. Returns the error that ended the
/// draining, or `None` when nothing more was available.
fn drain<T>(
    chan: &mut Channel,
    lines: &[&[u8]],
    next: &mut usize,
    echo: &mut Echo,
) -> Option<ChannelError>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    // At most one receive per line left, plus the one that ends the draining.
    for _ in 0..lines.len() - *next + 1 {
        let got = match chan.recv_within::<T>(Duration::ZERO) {
            Ok(None) => return None,
            Ok(Some(v)) => Ok(v),
            Err(ChannelError::Garbled { line, error }) => Err((line, error)),
            Err(e) => return Some(e),
        };
        let Some(line) = lines.get(*next) else {
            panic!("{got:?} received beyond the {} lines written", lines.len());
        };
        *next += 1;
        let got = match got {
            Ok(v) => Got::Msg(v),
            Err((shown, error)) => {
                assert!(!error.is_empty(), "Garbled without the decoder's error");
                let expected: String = String::from_utf8_lossy(line).chars().take(200).collect();
                assert_eq!(shown, expected, "Garbled shows another line");
                Got::Garbled
            }
        };
        let expected = match serde_json::from_slice::<T>(line) {
            Ok(v) => Got::Msg(v),
            Err(_) => Got::Garbled,
        };
        assert_eq!(got, expected, "line {} decoded differently", *next);
        if let Got::Msg(v) = got {
            echo.round_trip(&v);
        }
    }
    panic!("receiving did not stop: more receives than lines written");
}

fn run<T>(socket: bool, chunk: usize, close: bool, stream: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let mut echo = Echo::new();
    let mut input = Link::new(socket);
    let lines = complete_lines(stream);
    let mut next = 0;
    for piece in stream.chunks(chunk) {
        input.write(piece);
        if let Some(e) = drain::<T>(&mut input.chan, &lines, &mut next, &mut echo) {
            panic!(
                "{e:?} while the writer is open (a stream of {} bytes)",
                stream.len()
            );
        }
    }
    assert_eq!(next, lines.len(), "lines written but not received");
    if close {
        input.writer = None;
        match drain::<T>(&mut input.chan, &lines, &mut next, &mut echo) {
            Some(ChannelError::Closed) => {}
            other => panic!("end of file gave {other:?}, not Closed"),
        }
        // And stays closed.
        let again = input.chan.recv_within::<T>(Duration::ZERO);
        assert!(
            matches!(again, Err(ChannelError::Closed)),
            "after Closed: {again:?}"
        );
    } else {
        assert!(matches!(
            input.chan.recv_within::<T>(Duration::ZERO),
            Ok(None)
        ));
    }
}

/// Lines at the limit: `MAX_LINE - 1` bytes (and the newline) pass, a
/// longer one is `TooLong` — refused before it is all buffered.
fn check_limits() {
    let head = br#"{"seq":1,"t_ns":2,"result":"data","data":""#;
    let tail = br#""}"#;
    for (len, ok) in [(MAX_LINE - 1, true), (MAX_LINE + 1, false)] {
        let mut line = head.to_vec();
        line.resize(len - tail.len(), b'x');
        line.extend_from_slice(tail);
        assert_eq!(line.len(), len);
        line.push(b'\n');
        // A non-blocking socket pair: as much per round as the socket takes.
        let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
        ours.set_nonblocking(true).expect("non-blocking");
        let (_, sink) = pipe();
        let mut chan = Channel::new(theirs.into(), sink).expect("channel");
        let mut off = 0;
        let result = loop {
            match ours.write(&line[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
            match chan.recv_within::<Reply>(Duration::ZERO) {
                Ok(None) if off < line.len() => {}
                r => break r,
            }
        };
        match (ok, result) {
            (true, Ok(Some(r))) => assert_eq!(r.seq, 1),
            (false, Err(ChannelError::TooLong)) => {
                assert!(
                    off <= MAX_LINE + (1 << 20),
                    "TooLong only after {off} bytes"
                )
            }
            (ok, r) => panic!(
                "a line of {len} bytes (MAX_LINE {MAX_LINE}): {:?}, expected {}",
                r.map(|r| r.map(|_| "a reply")),
                if ok { "the reply" } else { "TooLong" }
            ),
        }
    }
}

static LIMITS: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    LIMITS.call_once(check_limits);
    let [mode, chunk, stream @ ..] = data else {
        return;
    };
    let socket = mode & 0x08 != 0;
    let close = mode & 0x10 != 0;
    let chunk = match *chunk as usize {
        0 => MAX_CHUNK,
        n => n,
    };
    if stream.len() > MAX_STREAM {
        return;
    }
    match mode & 0x07 {
        // The harness's side: what an actor writes.
        0 | 5 => run::<FromActor>(socket, chunk, close, stream),
        1 => run::<Reply>(socket, chunk, close, stream),
        2 => run::<Hello>(socket, chunk, close, stream),
        // The actor's side: what the harness writes.
        3 | 6 => run::<Envelope>(socket, chunk, close, stream),
        _ => run::<Request>(socket, chunk, close, stream),
    }
});
