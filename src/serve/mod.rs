//! `weft serve`: webhooks in, verified, persisted, run.

pub mod signature;
