//! Logs (issue 17), as far as they are built: what a Loki push request holds and
//! how it is checked ([`push`]), and whose it is and how fast it may come
//! ([`tenant`]). The log store (tantivy segments behind the commit seam), LogQL and
//! the Loki HTTP API are not built yet; no endpoint takes logs.

pub mod push;
pub mod tenant;
