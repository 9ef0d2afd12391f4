//! Unit tests over synthetic regions.
