//! Logs (issue 17), as far as they are built: what a Loki push request holds and
//! how it is checked ([`push`]), whose it is and how fast it may come
//! ([`tenant`]), and LogQL's syntax ([`logql`]). The log store (tantivy segments
//! behind the commit seam), LogQL's engine and the Loki HTTP API are not built yet;
//! no endpoint takes logs.

pub mod logql;
pub mod push;
pub mod tenant;
