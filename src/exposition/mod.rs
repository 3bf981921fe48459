//! Exposition formats: Prometheus text 0.0.4 and OpenMetrics 1.0 parsers (pull-based,
//! borrowing from the body), the text writer, and metric families for in-process
//! sources.

pub mod error;
pub mod family;
pub mod format;
mod lex;
pub mod openmetrics;
pub mod text;
pub mod write;
