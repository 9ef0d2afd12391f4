//! Test support shared by the workspace's tests, fuzz seeds and benchmarks:
//! builders of synthetic flash images ([`synth`]) and access to the shared
//! corpus of real ME images ([`corpus`]).

pub mod corpus;
pub mod synth;
pub mod swtpm;
