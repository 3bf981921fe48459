//! Scraping: Prometheus-compatible scrape configuration, target discovery (static and
//! file_sd), relabeling, and the loops that fetch targets and append what they
//! expose through the storage seam. The built-in collectors run through the same
//! loops as in-process sources.

pub mod append;
pub mod client;
pub mod config;
pub mod discovery;
pub mod manager;
pub mod metrics;
pub mod relabel;
pub mod scrape_loop;
pub mod table;
pub mod target;

pub use manager::{Job, LocalJob, ScrapeManager};
