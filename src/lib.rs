//! `migrate`: move a legacy database into PostgreSQL, table by table, with mappings,
//! transforms, exact values, resume after any crash, and validation.

pub mod checkpoint;
pub mod config;
pub mod plan;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod transform;
pub mod value;
