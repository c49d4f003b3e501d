//! The harness's side of an actor's control channel: line-delimited JSON
//! over a pipe pair (actors the harness spawns) or a Unix socket (actors
//! created by fork inside an actor). Every receive has a deadline.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::protocol::MAX_LINE;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the actor closed its channel (it ended)")]
    Closed,
    #[error("channel I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("the actor sent an unreadable message ({error}): {line:?}")]
    Garbled { line: String, error: String },
    #[error("the actor sent a line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("the actor did not take its request within the step's timeout (it is not reading)")]
    SendTimeout,
}

pub struct Channel {
    rfd: OwnedFd,
    wfd: OwnedFd,
    buf: Vec<u8>,
}

fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// Wait up to `timeout` for `fd` to become readable (or hang up).
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
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
    pub fn new(rfd: OwnedFd, wfd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(rfd.as_fd())?;
        set_nonblocking(wfd.as_fd())?;
        Ok(Channel {
            rfd,
            wfd,
            buf: Vec::new(),
        })
    }

    pub fn raw_read_fd(&self) -> i32 {
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
        let nl = self.buf.iter().position(|&b| b == b'\n')?;
        let rest = self.buf.split_off(nl + 1);
        let mut line = std::mem::replace(&mut self.buf, rest);
        line.pop();
        Some(line)
    }

    /// Read what is available without waiting; `Closed` at end of file.
    fn fill(&mut self) -> Result<(), ChannelError> {
        let mut chunk = [0u8; 8192];
        loop {
            match nix::unistd::read(self.rfd.as_fd(), &mut chunk) {
                Ok(0) => return Err(ChannelError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if self.buf.len() > MAX_LINE {
                        return Err(ChannelError::TooLong);
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(()),
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
            match self.fill() {
                Ok(()) => {}
                Err(ChannelError::Closed) if self.buf.contains(&b'\n') => continue,
                Err(e) => return Err(e),
            }
            if self.buf.contains(&b'\n') {
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
    pub fn recv_until<T: DeserializeOwned>(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<T>, ChannelError> {
        self.recv_within(deadline.saturating_duration_since(Instant::now()))
    }
}
