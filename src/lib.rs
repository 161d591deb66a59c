//! pulse: a small cluster node.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
pub mod dist;
pub mod name;
pub mod registry;
pub mod membership;
