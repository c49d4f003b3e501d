//! Planning: a scenario, resolved for one mechanism, becomes a plan of
//! concrete steps ([`resolve`]); each step's lock call is lowered to a system
//! call request ([`mech`]); the catalog is every scenario, read and planned
//! ([`catalog`]).
//!
//! May use: [`crate::spec`], [`crate::actor`] (the protocol's request types).

pub mod catalog;
pub mod mech;
pub mod resolve;
