//! The engine: a validated flow compiled into a [`plan::Plan`], run step by step against a transport.

pub mod auth;
pub mod call;
pub mod connection;
pub mod pager;
pub mod plan;
pub mod ratelimit;
pub mod retry;
pub mod run;
pub mod secrets;
pub mod sender;
