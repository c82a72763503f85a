//! Validated domain types: names, secrets, job kinds, their inputs and the plan of steps.

mod resources;

pub use resources::{Operators, Resources};
