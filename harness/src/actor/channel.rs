//! The harness's side of an actor's control channel: line-delimited JSON
//! over a pipe pair (actors the harness spawns) or a Unix socket (actors
//! created by fork inside an actor). Every receive has a deadline.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::actor::protocol::MAX_LINE;

/// Why a message could not be sent or received.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The actor closed its end: it ended.
    #[error("the actor closed its channel (it ended)")]
    Closed,
    /// Reading or writing the channel failed.
    #[error("channel I/O failed: {0}")]
    Io(#[from] io::Error),
    /// A line that is not a message of the expected type.
    #[error("the actor sent an unreadable message ({error}): {line:?}")]
    Garbled {
        /// The line, cut at 200 characters.
        line: String,
        /// Why it could not be decoded.
        error: String,
    },
    /// A line longer than [`MAX_LINE`] bytes.
    #[error("the actor sent a line longer than {MAX_LINE} bytes")]
    TooLong,
    /// The actor did not take a request before its deadline: it is not reading.
    #[error("the actor did not take its request within the step's timeout (it is not reading)")]
    SendTimeout,
}

/// The harness's end of one actor's control channel.
pub struct Channel {
    rfd: OwnedFd,
    wfd: OwnedFd,
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline (a long line read in
    /// pieces is scanned once, not once per piece).
    scanned: usize,
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// Wait up to `timeout` for `fd` to become readable (or hang up).
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let ts = nix::sys::time::TimeSpec::from_duration(timeout);
    let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    loop {
        match nix::poll::ppoll(&mut fds, Some(ts), None) {
            Ok(n) => return Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Channel {
    /// A channel that reads from `rfd` and writes to `wfd` (both made non-blocking).
    pub fn new(rfd: OwnedFd, wfd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(rfd.as_fd())?;
        set_nonblocking(wfd.as_fd())?;
        Ok(Channel {
            rfd,
            wfd,
            buf: Vec::new(),
            scanned: 0,
        })
    }

    pub(crate) fn raw_read_fd(&self) -> i32 {
        self.rfd.as_raw_fd()
    }

    /// Send one message; a full channel (an actor that does not read) is
    /// waited on only until `deadline`.
    pub fn send<T: Serialize>(&mut self, msg: &T, deadline: Instant) -> Result<(), ChannelError> {
        let mut line = serde_json::to_vec(msg).map_err(|e| io::Error::other(e.to_string()))?;
        line.push(b'\n');
        let mut off = 0;
        while off < line.len() {
            match nix::unistd::write(&self.wfd, &line[off..]) {
                Ok(n) => off += n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EPIPE) => return Err(ChannelError::Closed),
                Err(nix::errno::Errno::EAGAIN) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ChannelError::SendTimeout);
                    }
                    let ts = nix::sys::time::TimeSpec::from_duration(left);
                    let mut fds = [nix::poll::PollFd::new(
                        self.wfd.as_fd(),
                        nix::poll::PollFlags::POLLOUT,
                    )];
                    match nix::poll::ppoll(&mut fds, Some(ts), None) {
                        Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                        Err(e) => return Err(io::Error::from(e).into()),
                    }
                }
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
        Ok(())
    }

    /// Take a complete line out of the buffer, if there is one.
    fn take_line(&mut self) -> Option<Vec<u8>> {
        let Some(nl) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') else {
            self.scanned = self.buf.len();
            return None;
        };
        let nl = self.scanned + nl;
        self.scanned = 0;
        let rest = self.buf.split_off(nl + 1);
        let mut line = std::mem::replace(&mut self.buf, rest);
        line.pop();
        Some(line)
    }

    /// Read without waiting until a line is complete (`true`) or nothing
    /// more is there (`false`); `Closed` at end of file. Called when `buf`
    /// holds no complete line, so `buf` is the start of one line: longer
    /// than `MAX_LINE` with its newline is `TooLong`.
    fn fill(&mut self) -> Result<bool, ChannelError> {
        let mut chunk = [0u8; 8192];
        loop {
            match nix::unistd::read(self.rfd.as_fd(), &mut chunk) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => {
                    let had = self.buf.len();
                    self.buf.extend_from_slice(&chunk[..n]);
                    match chunk[..n].iter().position(|&b| b == b'\n') {
                        Some(nl) if had + nl < MAX_LINE => return Ok(true),
                        Some(_) => return Err(ChannelError::TooLong),
                        None if self.buf.len() >= MAX_LINE => return Err(ChannelError::TooLong),
                        None => {}
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(false),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
            }
        }
    }

    /// Receive one message, waiting at most `wait`. `Ok(None)` when none came.
    pub fn recv_within<T: DeserializeOwned>(
        &mut self,
        wait: Duration,
    ) -> Result<Option<T>, ChannelError> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(line) = self.take_line() {
                return serde_json::from_slice(&line).map(Some).map_err(|e| {
                    ChannelError::Garbled {
                        line: String::from_utf8_lossy(&line).chars().take(200).collect(),
                        error: e.to_string(),
                    }
                });
            }
            // A line completed: take it. (`Closed` comes only when no line
            // did: every complete line before the end is delivered.)
            if self.fill()? {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            wait_readable(self.rfd.as_fd(), deadline - now)?;
        }
    }

    /// Receive one message before `deadline`.
    pub(crate) fn recv_until<T: DeserializeOwned>(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<T>, ChannelError> {
        self.recv_within(deadline.saturating_duration_since(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A channel reading what a thread writes (then closes).
    fn reading(data: Vec<u8>) -> (Channel, std::thread::JoinHandle<()>) {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let (_r2, w2) = nix::unistd::pipe().expect("pipe");
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::File::from(w);
            let _ = f.write_all(&data);
        });
        (Channel::new(r, w2).expect("channel"), writer)
    }

    fn recv_all(c: &mut Channel) -> Vec<Result<serde_json::Value, String>> {
        let mut got = Vec::new();
        loop {
            match c.recv_within::<serde_json::Value>(Duration::from_secs(10)) {
                Ok(Some(v)) => got.push(Ok(v)),
                Ok(None) => panic!("nothing within 10 s"),
                Err(ChannelError::Closed) => return got,
                Err(e) => {
                    got.push(Err(e.to_string()));
                    return got;
                }
            }
        }
    }

    /// A JSON string line of exactly `n` bytes with its newline.
    fn line_of(n: usize) -> Vec<u8> {
        let mut l = vec![b'"'];
        l.resize(n - 2, b'x');
        l.extend_from_slice(b"\"\n");
        l
    }

    #[test]
    fn the_line_limit_counts_the_newline_and_only_one_line() {
        let (mut c, w) = reading(line_of(MAX_LINE));
        let got = recv_all(&mut c);
        w.join().expect("writer");
        assert_eq!(got.len(), 1);
        assert!(got[0].is_ok(), "a line of MAX_LINE bytes is accepted");

        let (mut c, w) = reading(line_of(MAX_LINE + 1));
        let got = recv_all(&mut c);
        drop(c);
        w.join().expect("writer");
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("longer")),
            "{got:?}"
        );

        // Many short lines, together longer than MAX_LINE: all delivered.
        let mut many = Vec::new();
        while many.len() <= MAX_LINE {
            many.extend_from_slice(b"{\"n\": 1}\n");
        }
        let n = many.len() / 9;
        let (mut c, w) = reading(many);
        let got = recv_all(&mut c);
        w.join().expect("writer");
        assert_eq!(got.len(), n);
        assert!(got.iter().all(Result::is_ok));
    }
}
