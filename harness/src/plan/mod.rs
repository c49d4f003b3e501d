//! Planning: a scenario, resolved for one mechanism, becomes a plan of
//! concrete steps ([`resolve`]: the plan's types and the walk, with the
//! process model, the lowering of each kind of step, expectations and checks
//! in files of their own); each step's operation is lowered to the
//! request an actor sends ([`lower`]), lock calls per mechanism ([`mech`]);
//! the catalog is every scenario, read and planned ([`catalog`]).
//!
//! May use: [`crate::spec`], [`crate::actor`] (the protocol's request types).

pub mod catalog;
pub mod lower;
pub mod mech;
pub mod resolve;
