//! The output kinds this service runs. Each kind lives in its own module
//! (its parameters, checks and sink) and declares a [`Kind`]; adding one
//! is its module, its `mod` line in `output/mod.rs` and its line here.

pub use super::schema::{
    parse_number, string_param, Kind, ParamSchema, Section, TestReport, TestRun, BUFFER_AGE,
    BUFFER_SIZE,
};

pub static KINDS: &[&Kind] = &[
    &super::file::KIND,
    &super::lua::KIND,
    &super::influxdb::KIND,
    &super::http_post::KIND,
    &super::splunk::KIND,
    &super::elasticsearch::KIND,
];

pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.name == name)
}

/// The function that builds `name`'s sink; `None` for an unknown kind and
/// for one that runs no sink (a script kind).
pub fn builder(name: &str) -> Option<super::sink::BuildSink> {
    find(name).and_then(Kind::build)
}

pub fn unknown_kind_message(name: &str) -> String {
    let known = KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    format!("unknown kind `{name}`; available kinds: {known}")
}
