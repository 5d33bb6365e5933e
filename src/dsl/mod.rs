//! The flow language: YAML with spans, the flow and project models, and value classification.

pub mod emit;
pub mod flow;
pub mod load;
pub mod project;
pub mod shape;
pub mod value;
pub mod yaml;
pub mod zone;
