//! Validation after a run (`--validate`, `migrate validate`): did every row arrive? (What is
//! checked before, binding every entity to both databases, is `bind`.)

pub mod deep;
pub mod post;
