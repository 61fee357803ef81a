//! `brokerstream import`: the `lua` outputs of a Centreon Broker
//! configuration (`centreonBroker.output[]`, as Centreon Web generates it for
//! cbd) become brokerstream outputs, read as Centreon reads them
//! (docs/lua-runtime.md §1.1, §1.2). What cannot be taken is reported with
//! the reason.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use super::{AdminError, OutputAdmin};
use crate::event::Filter;
use crate::journal::StartAt;
use crate::output::{self, OutputSpec, ParamType, Parameter};

/// Who the audit log says made the outputs an import creates.
pub const ACTOR: &str = "brokerstream import";

#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// Outputs created.
    pub created: Vec<String>,
    /// (what, why) for each output or parameter left out.
    pub skipped: Vec<(String, String)>,
    /// (what, why) for what was taken differently from the file, or left
    /// out of an output that was taken: a new name, a filter name dropped,
    /// a Centreon setting with no counterpart here. An administrator reads
    /// them before removing the outputs from Centreon.
    pub notes: Vec<(String, String)>,
}

/// What a configuration holds for brokerstream.
#[derive(Debug, Default)]
pub struct Reading {
    pub specs: Vec<OutputSpec>,
    pub skipped: Vec<(String, String)>,
    pub notes: Vec<(String, String)>,
}

/// The keys of a Lua output that become part of a brokerstream output.
const TAKEN_KEYS: &[&str] = &["name", "type", "path", "filters", "lua_parameter"];

/// Why a key of a Centreon Lua output is not taken (docs/lua-runtime.md
/// §1.1 lists the generic keys of every endpoint).
fn untaken_key_reason(key: &str) -> &'static str {
    match key {
        "failover" => {
            "brokerstream keeps what an output has not delivered in its journal and retries it: no failover output is needed"
        }
        "retry_interval" => {
            "brokerstream retries a failing output with its own exponential backoff"
        }
        "buffering_timeout" | "read_timeout" => {
            "a timing of Centreon's endpoints that brokerstream's outputs do not have"
        }
        "cache" => "Centreon forces it on for Lua; brokerstream's cache is always on",
        _ => "not a setting of Centreon's Lua output",
    }
}

/// The outputs of a configuration, what was left out of them and what
/// was taken differently.
pub fn read_config(json: &Value) -> Reading {
    let mut reading = Reading::default();
    let outputs = match json.pointer("/centreonBroker/output") {
        Some(Value::Array(items)) => items.clone(),
        Some(item @ Value::Object(_)) => vec![item.clone()],
        _ => {
            reading.skipped.push((
                "centreonBroker.output".to_owned(),
                "not found: nothing to import".to_owned(),
            ));
            return reading;
        }
    };
    for (i, entry) in outputs.iter().enumerate() {
        let name = entry
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("output[{i}]"));
        let ty = entry.get("type").and_then(Value::as_str).unwrap_or("");
        if !ty.eq_ignore_ascii_case("lua") {
            reading
                .skipped
                .push((name, format!("type `{ty}` is not a Lua output")));
            continue;
        }
        let Some(path) = entry.get("path").and_then(Value::as_str) else {
            reading.skipped.push((
                name.clone(),
                format!("lua: no 'path' defined for endpoint '{name}'"),
            ));
            continue;
        };
        // Centreon takes any name; brokerstream's appear in URLs and file
        // names. A name that does not fit is changed rather than the output
        // refused, and the change is said.
        let new_name = match output::check_name(&name) {
            Ok(()) => name.clone(),
            Err(why) => match fitting_name(&name) {
                Some(fitted) => {
                    reading.notes.push((
                        name.clone(),
                        format!("renamed to `{fitted}`: an output name {why}"),
                    ));
                    fitted
                }
                None => {
                    reading
                        .skipped
                        .push((name.clone(), format!("the name {why}")));
                    continue;
                }
            },
        };
        if let Some(map) = entry.as_object() {
            for key in map.keys().filter(|k| !TAKEN_KEYS.contains(&k.as_str())) {
                reading.notes.push((
                    format!("{name}: {key}"),
                    format!("not taken: {}", untaken_key_reason(key)),
                ));
            }
        }
        let mut spec = OutputSpec::blank(&new_name);
        spec.kind = "lua".to_owned();
        spec.path = Some(path.to_owned());
        spec.filters = read_filters(&name, entry.get("filters"), &mut reading.notes);
        let params = match entry.get("lua_parameter") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(item) => vec![item.clone()],
        };
        let mut bad = None;
        for p in &params {
            match read_parameter(p) {
                Ok(Some(param)) => {
                    // The first of duplicate names wins, as in Centreon.
                    if spec.parameter(&param.name).is_none() {
                        spec.parameters.push(param);
                    } else {
                        reading.skipped.push((
                            format!("{name}: parameter {}", param.name),
                            "given more than once; the first is kept".to_owned(),
                        ));
                    }
                }
                Ok(None) => reading.skipped.push((
                    format!(
                        "{name}: parameter {}",
                        p.get("name").and_then(Value::as_str).unwrap_or("?")
                    ),
                    format!(
                        "type `{}` is not string, number or password (Centreon drops it too)",
                        p.get("type").and_then(Value::as_str).unwrap_or("?")
                    ),
                )),
                Err(e) => bad = Some(e),
            }
        }
        match bad {
            Some(e) => reading.skipped.push((name, e)),
            None => reading.specs.push(spec),
        }
    }
    reading
}

/// `name` with every character an output name may not hold made a `-`,
/// no leading dot, at most [`output::MAX_NAME_LEN`] characters; `None`
/// when nothing is left.
fn fitting_name(name: &str) -> Option<String> {
    let replaced: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    // Only ASCII remains, so a byte count is a character count.
    let fitted: String = replaced
        .trim_start_matches('.')
        .chars()
        .take(output::MAX_NAME_LEN)
        .collect();
    (output::check_name(&fitted).is_ok() && fitted.chars().any(|c| c.is_ascii_alphanumeric()))
        .then_some(fitted)
}

/// The category names of `filters` as brokerstream's filters take them.
/// Centreon logs and ignores a name it does not know, never gives a Lua
/// output its `local` events, and gives it everything when no valid name
/// remains (docs/lua-runtime.md §1.1); the same happens here, with a note
/// where a name is dropped.
fn read_filters(
    output: &str,
    value: Option<&Value>,
    notes: &mut Vec<(String, String)>,
) -> Vec<String> {
    let names: Vec<&Value> = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::String(s)) if s.trim() == "all" => return Vec::new(),
        Some(Value::Object(map)) => match map.get("category") {
            None | Some(Value::Null) => return Vec::new(),
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one) => vec![one],
        },
        Some(other) => {
            notes.push((
                format!("{output}: filters"),
                format!("`{other}` is not a category list: every event is given to the script, as in Centreon"),
            ));
            return Vec::new();
        }
    };
    let mut kept = Vec::new();
    for value in names {
        let Some(name) = value.as_str().map(str::trim) else {
            notes.push((
                format!("{output}: filters"),
                format!("`{value}` is not a category name: ignored, as in Centreon"),
            ));
            continue;
        };
        if name == "all" {
            return Vec::new();
        }
        if name == "local" || name.starts_with("local:") {
            notes.push((
                format!("{output}: filters"),
                format!("`{name}` dropped: Centreon never gives `local` events to a Lua output"),
            ));
            continue;
        }
        match Filter::parse(&[name]) {
            Ok(_) => kept.push(name.to_owned()),
            Err(e) => notes.push((
                format!("{output}: filters"),
                format!("`{name}` dropped ({e}): Centreon ignores it too"),
            )),
        }
    }
    if kept.is_empty() {
        notes.push((
            format!("{output}: filters"),
            "no valid category left: every event is given to the script, as in Centreon".to_owned(),
        ));
    }
    kept
}

/// One `lua_parameter`; `Ok(None)` for a type Centreon ignores.
fn read_parameter(p: &Value) -> Result<Option<Parameter>, String> {
    let field = |key: &str| {
        p.get(key)
            .ok_or_else(|| format!("a lua_parameter has no `{key}`"))
    };
    let name = field("name")?
        .as_str()
        .ok_or("a lua_parameter name must be a string")?;
    let ty = field("type")?.as_str().unwrap_or("");
    let value = field("value")?
        .as_str()
        .ok_or_else(|| format!("lua_parameter `{name}`: the value must be a JSON string"))?;
    let ty = match ty {
        "" | "string" => ParamType::String,
        "password" => ParamType::Password,
        "number" => ParamType::Number,
        _ => return Ok(None),
    };
    Ok(Some(Parameter {
        name: name.to_owned(),
        ty,
        value: value.to_owned(),
    }))
}

/// Reads `file` and creates its Lua outputs through `admin`, as the API
/// would: the same limits (`max_outputs` too), validation and audit entry.
/// The admin is usually [`OutputAdmin::offline`]: the service may be
/// stopped, and a running one picks the outputs up at its next start.
pub async fn import(file: &Path, admin: &OutputAdmin) -> anyhow::Result<Report> {
    let text = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let json: Value =
        serde_json::from_slice(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let Reading {
        specs,
        mut skipped,
        mut notes,
    } = read_config(&json);
    // sclib's scripts ask broker.bbdo_version() which fields events carry
    // (docs/lua-runtime.md §1.1: Centreon's default is 2.0.0).
    let centreon_bbdo = json
        .pointer("/centreonBroker/bbdo_version")
        .and_then(Value::as_str)
        .unwrap_or("2.0.0");
    let ours = &admin.lua_settings().bbdo_version;
    if !specs.is_empty() && centreon_bbdo.trim() != ours {
        notes.push((
            "centreonBroker.bbdo_version".to_owned(),
            format!(
                "Centreon Broker runs `{centreon_bbdo}`, brokerstream's lua.bbdo_version is `{ours}`: \
                 set lua.bbdo_version = \"{centreon_bbdo}\" so that broker.bbdo_version() answers the scripts as it did"
            ),
        ));
    }
    let mut report = Report::default();
    for spec in specs {
        let name = spec.name.clone();
        match admin
            .create(ACTOR, spec, Default::default(), StartAt::Head)
            .await
        {
            Ok(_) => report.created.push(name),
            Err(AdminError::Invalid(errors)) => {
                let why = errors
                    .0
                    .iter()
                    .map(|(f, m)| format!("{f}: {m}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                skipped.push((name, why));
            }
            Err(AdminError::AlreadyExists(_)) => {
                skipped.push((name, "an output of this name already exists".into()))
            }
            Err(AdminError::LimitReached(why)) => skipped.push((name, why)),
            Err(e) => return Err(e.into()),
        }
    }
    report.skipped = skipped;
    report.notes = notes;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lua_outputs_are_read_as_centreon_reads_them() {
        let config = json!({"centreonBroker": {"output": [
            {"name": "central-sql", "type": "sql"},
            {"name": "influx", "type": "LUA", "path": "/usr/share/centreon-broker/lua/influx.lua",
             "filters": {"category": ["neb", "storage"]},
             "lua_parameter": [
                {"name": "url", "type": "string", "value": "http://127.0.0.1:8086"},
                {"name": "max", "type": "number", "value": "10"},
                {"name": "flag", "type": "boolean", "value": "true"},
                {"name": "url", "type": "string", "value": "second"},
             ]},
            {"name": "single", "type": "lua", "path": "/x.lua",
             "lua_parameter": {"name": "token", "type": "password", "value": "s"}},
            {"name": "nopath", "type": "lua"},
            {"name": "badvalue", "type": "lua", "path": "/x.lua",
             "lua_parameter": [{"name": "n", "type": "number", "value": 5}]},
        ]}});
        let Reading {
            specs,
            skipped,
            notes,
        } = read_config(&config);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["influx", "single"]);
        assert_eq!(specs[0].filters, ["neb", "storage"]);
        assert_eq!(specs[0].parameters.len(), 2);
        assert_eq!(
            specs[0].parameter("url").map(|p| p.value.as_str()),
            Some("http://127.0.0.1:8086")
        );
        assert_eq!(specs[1].parameters[0].ty, ParamType::Password);
        let why: Vec<&str> = skipped.iter().map(|(w, _)| w.as_str()).collect();
        assert_eq!(
            why,
            [
                "central-sql",
                "influx: parameter flag",
                "influx: parameter url",
                "nopath",
                "badvalue"
            ]
        );
        assert_eq!(skipped[3].1, "lua: no 'path' defined for endpoint 'nopath'");
        // Nothing of these outputs was taken differently.
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn names_filters_and_keys_centreon_takes_but_brokerstream_would_not() {
        let config = json!({"centreonBroker": {"output": [
            {"name": "Splunk events (prod)", "type": "lua", "path": "/x.lua",
             "failover": "splunk-retention", "retry_interval": "60",
             "filters": {"category": ["neb", "storage:bogus", "local", "neb:ServiceStatus"]}},
            {"name": "ok-name", "type": "lua", "path": "/x.lua",
             "filters": {"category": ["nosuchcategory"]}},
            {"name": "all-string", "type": "lua", "path": "/x.lua", "filters": "all"},
            {"name": "one-string", "type": "lua", "path": "/x.lua", "filters": {"category": "bam"}},
            {"name": "...", "type": "lua", "path": "/x.lua"},
        ]}});
        let Reading {
            specs,
            skipped,
            notes,
        } = read_config(&config);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Splunk-events--prod-",
                "ok-name",
                "all-string",
                "one-string"
            ]
        );
        assert_eq!(specs[0].filters, ["neb", "neb:ServiceStatus"]);
        assert!(specs[1].filters.is_empty());
        assert!(specs[2].filters.is_empty());
        assert_eq!(specs[3].filters, ["bam"]);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].0, "...");
        let expected = [
            (
                "Splunk events (prod)",
                "renamed to `Splunk-events--prod-`: an output name may hold only",
            ),
            (
                "Splunk events (prod): failover",
                "not taken: brokerstream keeps",
            ),
            (
                "Splunk events (prod): retry_interval",
                "not taken: brokerstream retries",
            ),
            (
                "Splunk events (prod): filters",
                "`storage:bogus` dropped (category `storage` has no event named `bogus`)",
            ),
            ("Splunk events (prod): filters", "`local` dropped"),
            (
                "ok-name: filters",
                "`nosuchcategory` dropped (unknown category `nosuchcategory`",
            ),
            ("ok-name: filters", "no valid category left: every event"),
        ];
        assert_eq!(notes.len(), expected.len(), "{notes:#?}");
        for ((what, why), (want_what, want_why)) in notes.iter().zip(expected) {
            assert_eq!(what, want_what);
            assert!(why.starts_with(want_why), "{what}: {why}");
        }
    }
}
