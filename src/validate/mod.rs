//! Validation before a run (`--check-only`, and the pre-flight of every run) and after it
//! (`--validate`): is everything there and compatible, and did every row arrive?

pub mod deep;
pub mod post;
pub mod pre;
