//! brokerstream: a standalone stream-connector manager for Centreon
//! monitoring data. The module tree follows the data flow of
//! `DESIGN.md`: events come in, go through the journal, and workers hand
//! them to outputs.

pub mod app;
pub mod auth;
pub mod bbdo;
pub mod bench;
pub mod cache;
pub mod config;
pub mod event;
pub mod ingest;
pub mod journal;
pub mod output;
pub mod store;
pub mod web;
