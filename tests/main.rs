//! Integration tests: the real binary against a real PostgreSQL, a fresh database per test.

mod support;

mod bad_input;
mod cli;
mod connect;
mod crash;
mod deep;
mod demo;
mod exact_types;
mod exactness;
mod faults;
mod files;
mod keys;
mod lossless;
mod messages;
mod oracle_client;
mod oracle_live;
mod report;
mod scaffold;
mod sync;
