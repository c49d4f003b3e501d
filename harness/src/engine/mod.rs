//! The engine: driving one trial through its actor processes ([`driver`]:
//! the step driver on top of an actor pool that starts, talks to
//! and ends the actors; the benchmarks use the pool directly),
//! running many trials over job slots ([`runner`], [`slots`], [`barrier`]),
//! and measuring lock latency ([`bench`](mod@bench)).
//!
//! May use: every layer below: [`crate::spec`] to [`crate::verdict`].

pub mod barrier;
pub mod bench;
pub mod driver;
pub mod passes;
pub mod runner;
pub mod session;
pub mod slots;
pub mod stress;
