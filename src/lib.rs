//! weft: integration flows between HighLevel (GHL) and partner apps, written as YAML and validated like code.
//!
//! Data flows through the modules in this order: [`source`] (files and spans) → [`dsl`] (YAML with spans →
//! flow and project models) → [`catalog`] (connectors: OpenAPI operations and webhook events) → [`validate`]
//! (shape and meaning checks) → [`diag`] (diagnostics as data, rendered only by the [`cli`]).

pub mod catalog;
pub mod cli;
pub mod diag;
pub mod dsl;
pub mod engine;
pub mod mapping;
pub mod sandbox;
pub mod serve;
pub mod source;
pub mod store;
pub mod testcase;
pub mod transport;
pub mod validate;
