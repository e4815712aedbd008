//! `migrate`: move a legacy database into PostgreSQL, table by table, with mappings,
//! transforms, exact values, resume after any crash, and validation.

pub mod app;
pub mod backoff;
pub mod bind;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod interrupt;
pub mod orchestrator;
pub mod pipeline;
pub mod plan;
pub mod profile;
pub mod report;
pub mod scaffold;
pub mod sink;
pub mod source;
pub mod sqlstate;
pub mod sync;
pub mod telemetry;
#[cfg(test)]
mod testgen;
pub mod transform;
pub mod validate;
pub mod value;
