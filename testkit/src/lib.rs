//! Test support shared by the workspace's tests, fuzz seeds and benchmarks:
//! builders of synthetic flash images and access to `../shared/corpus`.
