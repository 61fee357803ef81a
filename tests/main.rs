//! Integration tests: one binary, so the suite links once. Every test
//! starts what it needs on loopback (a brokerstream on port 0, a temporary
//! data directory) and stops it.

mod api;
mod backup;
mod bbdo;
mod bbdo_tls;
mod common;
mod deadletters;
mod file_output;
mod import;
mod ingest_memory;
mod journal;
mod lifecycle;
mod limits;
mod listeners;
mod lua;
mod lua_destinations;
mod lua_fallbacks;
mod lua_modules;
mod migrations;
mod native;
mod observe;
mod pb_views;
mod reload;
mod scripts;
mod secrets;
mod security;
mod serve;
mod tls;
mod web;
