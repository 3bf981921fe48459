//! LogQL: the syntax tree ([`ast`]), its parser ([`parser`]) and log pipelines run
//! on one line ([`pipeline`]). The engine over stored logs is not built yet
//! (docs/design/logs.md).

pub mod ast;
pub mod format;
pub mod parser;
pub mod pipeline;

pub use parser::{ParseError, parse};
