//! The engine: a validated flow compiled into a [`plan::Plan`], run step by step against a transport.

pub mod connection;
pub mod plan;
