//! LogQL: the syntax tree ([`ast`]) and its parser ([`parser`]). The engine that
//! evaluates it is not built yet (docs/design/logs.md).

pub mod ast;
pub mod parser;

pub use parser::{ParseError, parse};
