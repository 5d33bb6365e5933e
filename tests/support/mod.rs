//! Fakes shared by integration tests. Each test binary uses a part of them.
#![allow(dead_code)]

pub mod upstream;
