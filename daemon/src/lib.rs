//! strackt: keeps a Linux server *defined* instead of assembled.
//!
//! The pipeline (../DESIGN.md): load → build → observe → plan → switch → verify → record.
//! `definition` turns text into a validated definition, `generation` builds and flips
//! generations on disk, `plan` diffs desired against observed (pure), `apply` runs a plan
//! through `host`, `state` records everything in SQLite, `daemon` drives the loop and `api`
//! exposes it.

pub mod api;
pub mod apply;
pub mod backup;
pub mod cli;
pub mod daemon;
pub mod definition;
pub mod deploy;
pub mod docs;
pub mod generation;
pub mod host;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod paths;
pub mod plan;
pub mod rebuild;
pub mod receiver;
pub mod state;
pub mod status;
pub mod timing;
pub mod vault;
