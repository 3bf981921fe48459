//! ODIN: a monitoring appliance in one binary.
//!
//! Layers, each depending only on those above it in this list:
//! * [`model`] — labels, samples, matchers, time.
//! * [`storage`] — the seams: appendable, queryable, chunk-queryable, admin.
//! * [`tsdb`] — the embedded TSDB implementing them (WAL, head, Prometheus blocks).
//! * [`shipper`] — uploads finished blocks to object storage (Thanos bucket layout).
//! * [`bucketstore`] — reads blocks that live only in the bucket (long-term queries).
//! * [`exposition`] — the text and OpenMetrics formats.
//! * [`scrape`], [`remote`], [`collect`] — sources that write through the seams
//!   (the collectors run as in-process scrape targets).
//! * [`promql`] — the query engine, reading through the seams.
//! * [`logs`] — Loki push requests, decoded and checked (the log store and LogQL
//!   are not built yet).
//! * [`api`] — the HTTP surface; [`storeapi`] — the Thanos StoreAPI (gRPC).
//! * [`supervise`] — long-lived tasks restarted (or the process stopped) when they fail.
//! * [`config`] and [`app`] wire it all together.

pub mod api;
pub mod app;
pub mod bucketstore;
pub mod collect;
pub mod config;
pub mod exposition;
pub mod fuzzing;
pub mod gostrconv;
pub mod log;
pub mod logs;
pub mod model;
pub mod promql;
pub mod remote;
pub mod replication;
pub mod rules;
pub mod scrape;
pub mod security;
pub mod shipper;
pub mod storage;
pub mod storeapi;
pub mod supervise;
pub mod template;
pub mod tsdb;
