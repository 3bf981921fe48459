//! Integration tests: each starts the real `odin` binary on loopback with a temporary
//! data directory and talks to it over HTTP, as a client would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod alerting;
mod bucket_query;
mod cluster;
mod common;
mod crash;
mod disk_full;
mod fixtures;
mod fuzz_smoke;
mod grafana;
mod hardening_query;
mod http_limits;
mod lifecycle;
mod loki;
mod node_exporter;
mod prometheus_compat;
mod promql_diff;
mod remote_read;
mod remote_write;
mod rules;
mod scrape;
pub(crate) mod security;
mod shipper;
mod soak;
mod storeapi;
mod tsdb_hardening;
