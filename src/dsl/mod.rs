//! The flow language: YAML with spans, the flow and project models, and value classification.

pub mod yaml;
