//! The output kinds and the schemas of their parameters. The REST API
//! validates against these schemas, and the web form is generated from them.

use serde::Serialize;

use super::{FieldErrors, OutputSpec, ParamType, Parameter, Template};

/// One parameter a kind accepts.
#[derive(Debug, Serialize)]
pub struct ParamSchema {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub required: bool,
    pub default: Option<&'static str>,
    pub help: &'static str,
    /// Never returned by the API, never logged.
    pub secret: bool,
    /// The values allowed, when the parameter is a choice.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub choices: &'static [&'static str],
    /// Bounds of a number parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Kind {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: &'static [ParamSchema],
    /// Runs a script (`path`) that takes parameters of any name, as
    /// Centreon's `lua_parameter`, instead of a fixed schema.
    pub script: bool,
    #[serde(skip)]
    check: fn(&OutputSpec, &mut FieldErrors),
}

/// A `string` parameter, for the kinds' schema tables.
pub const fn string_param(
    name: &'static str,
    required: bool,
    default: Option<&'static str>,
    choices: &'static [&'static str],
    help: &'static str,
) -> ParamSchema {
    ParamSchema {
        name,
        ty: ParamType::String,
        required,
        default,
        help,
        secret: false,
        choices,
        min: None,
    }
}

/// `max_buffer_size` and `max_buffer_age`, the names Centreon's scripts
/// use, shared by every kind.
pub const BUFFER_SIZE: ParamSchema = ParamSchema {
    name: "max_buffer_size",
    ty: ParamType::Number,
    required: false,
    default: Some("1000"),
    help: "Flush once this many events are buffered.",
    secret: false,
    choices: &[],
    min: Some(1.0),
};
pub const BUFFER_AGE: ParamSchema = ParamSchema {
    name: "max_buffer_age",
    ty: ParamType::Number,
    required: false,
    default: Some("5"),
    help: "Flush once the oldest buffered event is this many seconds old.",
    secret: false,
    choices: &[],
    min: Some(0.001),
};

pub static KINDS: &[Kind] = &[
Kind {
    name: "file",
    description: "Appends events to a file: one JSON object per line, or a line built from a template.",
    parameters: &[
        ParamSchema {
            name: "path",
            ty: ParamType::String,
            required: true,
            default: None,
            help: "The file to append to; created if missing (its directory must exist).",
            secret: false,
            choices: &[],
            min: None,
        },
        ParamSchema {
            name: "format",
            ty: ParamType::String,
            required: false,
            default: Some("json"),
            help: "`json`: one event per line in its JSON form. `template`: one line per event from `template`.",
            secret: false,
            choices: &["json", "template"],
            min: None,
        },
        ParamSchema {
            name: "template",
            ty: ParamType::String,
            required: false,
            default: None,
            help: "With format `template`: the line, with `{field}` placeholders and cache names such as `{cache.host.name}` and `{cache.service.description}`; `{{` and `}}` are literal braces.",
            secret: false,
            choices: &[],
            min: None,
        },
        BUFFER_SIZE,
        BUFFER_AGE,
    ],
    script: false,
    check: check_file,
},
Kind {
    name: "lua",
    description: "Runs a Centreon Broker Lua stream connector unchanged: `path` names the script (inside a script directory), parameters of any name are given to its init(conf).",
    parameters: &[],
    script: true,
    check: check_lua,
},
Kind {
    name: "influxdb",
    description: "Writes metrics (and optionally status perfdata) as line protocol to InfluxDB 1.x `/write` or 2.x `/api/v2/write`: measurement = service description, tag `host` = host name, field = metric name.",
    parameters: super::influxdb::PARAMETERS,
    script: false,
    check: super::influxdb::check,
},
Kind {
    name: "http",
    description: "POSTs each batch to a URL as a JSON array or NDJSON, each event's body from a template or its JSON form; custom headers, Basic or Bearer authentication.",
    parameters: super::http_post::PARAMETERS,
    script: false,
    check: super::http_post::check,
},
Kind {
    name: "splunk",
    description: "Sends events to Splunk's HTTP Event Collector (`/services/collector/event`), or metric events as Splunk metrics (`/services/collector`).",
    parameters: super::splunk::PARAMETERS,
    script: false,
    check: super::splunk::check,
},
Kind {
    name: "elasticsearch",
    description: "Indexes events into Elasticsearch or OpenSearch with `_bulk`, into an index or a data stream; items refused for what they hold (a mapping error) go to the dead-letter file; the others are sent again alone.",
    parameters: super::elasticsearch::PARAMETERS,
    script: false,
    check: super::elasticsearch::check,
}
];

pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

pub fn unknown_kind_message(name: &str) -> String {
    let known = KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
    format!("unknown kind `{name}`; available kinds: {known}")
}

impl Kind {
    pub fn schema(&self, name: &str) -> Option<&'static ParamSchema> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// Checks parameters against the schema, then the kind's own rules.
    /// Defaults are not stored: what is stored is what the administrator
    /// set, and [`OutputSpec::value`] falls back on the schema's default.
    pub fn validate(&self, spec: &OutputSpec, errors: &mut FieldErrors) {
        if self.script {
            (self.check)(spec, errors);
            return;
        }
        if spec.path.is_some() {
            errors.add(
                "path",
                format!(
                    "only `lua` outputs have a script path, not `{}` ones",
                    self.name
                ),
            );
        }
        for p in &spec.parameters {
            let field = format!("parameters.{}", p.name);
            match self.schema(&p.name) {
                None => {
                    let known = self
                        .parameters
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ");
                    errors.add(
                        field,
                        format!(
                            "`{}` outputs have no such parameter (known: {known})",
                            self.name
                        ),
                    );
                }
                Some(schema) => {
                    if let Err(message) = check_value(schema, p) {
                        errors.add(field, message);
                    }
                }
            }
        }
        for schema in self.parameters {
            if spec.parameter(schema.name).is_some() {
                continue;
            }
            if schema.required {
                errors.add(format!("parameters.{}", schema.name), "is required");
            }
        }
        if errors.is_empty() {
            (self.check)(spec, errors);
        }
    }
}

fn check_value(schema: &ParamSchema, p: &Parameter) -> Result<(), String> {
    if p.ty != schema.ty {
        return Err(format!("must be of type `{}`, not `{}`", schema.ty, p.ty));
    }
    if schema.ty == ParamType::Number {
        let n = parse_number(&p.value)?;
        if let Some(min) = schema.min {
            if n < min {
                return Err(format!("must be at least {min}"));
            }
        }
    }
    if !schema.choices.is_empty() && !schema.choices.contains(&p.value.as_str()) {
        return Err(format!("must be one of: {}", schema.choices.join(", ")));
    }
    Ok(())
}

/// A `number` parameter's value, as text that must read as a finite number.
/// The error does not quote the value: a password typed into a field of
/// the wrong type must not come back in an answer or a page.
pub fn parse_number(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(n) if n.is_finite() => Ok(n),
        _ => Err("is not a number".to_owned()),
    }
}

/// A script output: a `path`, and parameters of any name whose values
/// Centreon could read (docs/lua-runtime.md §1.2). Where the script is is
/// checked against the service's script directories by the supervisor.
fn check_lua(spec: &OutputSpec, errors: &mut FieldErrors) {
    match &spec.path {
        None => errors.add("path", "is required: the script to run"),
        Some(path) if path.trim().is_empty() => errors.add("path", "must not be empty"),
        Some(_) => {}
    }
    for p in &spec.parameters {
        if let Err(message) = super::lua::runtime::conf_value(p) {
            let field = if p.name.is_empty() {
                "parameters".to_owned()
            } else {
                format!("parameters.{}", p.name)
            };
            errors.add(field, message);
        }
    }
    if spec
        .filters
        .iter()
        .any(|f| f == "local" || f.starts_with("local:"))
    {
        errors.add(
            "filters",
            "category `local` is forbidden for `lua` outputs, as in Centreon",
        );
    }
}

fn check_file(spec: &OutputSpec, errors: &mut FieldErrors) {
    let format = spec.parameter("format").map(|p| p.value.as_str());
    let template = spec.parameter("template");
    match (format, template) {
        (Some("template"), None) => {
            errors.add("parameters.template", "is required with format `template`")
        }
        (Some("template"), Some(t)) => {
            if let Err(e) = Template::parse(&t.value) {
                errors.add("parameters.template", e);
            }
        }
        (_, Some(_)) => errors.add("parameters.template", "is only used with format `template`"),
        _ => {}
    }
    if spec
        .parameter("path")
        .is_some_and(|p| p.value.trim().is_empty())
    {
        errors.add("parameters.path", "must not be empty");
    }
}
