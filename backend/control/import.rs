//! `brokerstream import`: the `lua` outputs of a Centreon Broker
//! configuration (`centreonBroker.output[]`, as Centreon Web generates it for
//! cbd) become brokerstream outputs, read as Centreon reads them
//! (docs/lua-runtime.md §1.1, §1.2). What cannot be taken is reported with
//! the reason.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use super::{AdminError, OutputAdmin};
use crate::journal::StartAt;
use crate::output::{OutputSpec, ParamType, Parameter};

/// Who the audit log says made the outputs an import creates.
pub const ACTOR: &str = "brokerstream import";

#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// Outputs created.
    pub created: Vec<String>,
    /// (what, why) for each output or parameter left out.
    pub skipped: Vec<(String, String)>,
}

/// The outputs of a configuration, and what was left out of them.
pub fn read_config(json: &Value) -> (Vec<OutputSpec>, Vec<(String, String)>) {
    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    let outputs = match json.pointer("/centreonBroker/output") {
        Some(Value::Array(items)) => items.clone(),
        Some(item @ Value::Object(_)) => vec![item.clone()],
        _ => {
            skipped.push((
                "centreonBroker.output".to_owned(),
                "not found: nothing to import".to_owned(),
            ));
            return (specs, skipped);
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
            skipped.push((name, format!("type `{ty}` is not a Lua output")));
            continue;
        }
        let Some(path) = entry.get("path").and_then(Value::as_str) else {
            skipped.push((
                name.clone(),
                format!("lua: no 'path' defined for endpoint '{name}'"),
            ));
            continue;
        };
        let mut spec = OutputSpec::blank(&name);
        spec.kind = "lua".to_owned();
        spec.path = Some(path.to_owned());
        spec.filters = read_filters(entry.get("filters"));
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
                        skipped.push((
                            format!("{name}: parameter {}", param.name),
                            "given more than once; the first is kept".to_owned(),
                        ));
                    }
                }
                Ok(None) => skipped.push((
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
            Some(e) => skipped.push((name, e)),
            None => specs.push(spec),
        }
    }
    (specs, skipped)
}

fn read_filters(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Object(map)) => match map.get("category") {
            Some(Value::String(s)) if s != "all" => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| *s != "all")
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
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
    let (specs, mut skipped) = read_config(&json);
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
        let (specs, skipped) = read_config(&config);
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
    }
}
