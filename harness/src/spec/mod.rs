//! The scenario language and what every layer shares: the types a scenario
//! file is read into, source locations for errors (`file:line:column`), errno
//! names, and the crate's error types.
//!
//! May use: nothing else in the crate (the bottom layer).

pub mod errno;
pub mod error;
pub mod loc;
pub mod scenario;
