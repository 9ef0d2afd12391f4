//! Builders of synthetic flash images (descriptor, ME region) that tests construct themselves.

pub mod descriptor;
