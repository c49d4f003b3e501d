//! lockcheck: tells, for any mounted directory, whether its file locking
//! really works — with evidence.
//!
//! The pipeline, one module per step:
//! [`catalog`] loads scenario files ([`scenario`]) → [`plan`] resolves each for
//! every mechanism → [`runner`] makes trials (target × scenario × mechanism)
//! → [`driver`] runs a trial through actor processes ([`actor`], [`protocol`],
//! [`channel`]), observing the kernel ([`observe`]) → [`judge`] compares
//! with the expectation → [`report`] writes JSON and Markdown.

pub mod actor;
pub mod apps;
pub mod barrier;
pub mod bench;
pub mod beneath;
pub mod catalog;
pub mod channel;
pub mod driver;
pub mod errno;
pub mod error;
pub mod fuzz;
pub mod interrupt;
pub mod judge;
pub mod loc;
pub mod matrix;
pub mod mech;
pub mod observe;
pub mod plan;
pub mod protocol;
pub mod provision;
pub mod qualify;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod slots;
pub mod target;
pub mod zygote;

pub use error::{Error, Result};
