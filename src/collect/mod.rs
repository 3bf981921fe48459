//! Built-in collectors. For now: the process's own `process_*` metrics. The node and
//! GPU collectors are not built yet.

pub mod process;
