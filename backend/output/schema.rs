//! What an output kind is: its name, the schema of its parameters, its
//! own checks, and what runs it. The REST API validates against these
//! schemas, and the web form is generated from them. The kinds themselves
//! are listed in [`super::kinds`]; each one lives in its own module and
//! depends on this one, never the other way round.

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use futures::future::BoxFuture;

use super::sink::BuildSink;
use super::{FieldErrors, OutputSpec, ParamType, Parameter};
use crate::cache::Cache;
use crate::event::Event;

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

pub struct Kind {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: &'static [ParamSchema],
    /// Runs a script (`path`) that takes parameters of any name, as
    /// Centreon's `lua_parameter`, instead of a fixed schema.
    pub script: bool,
    check: fn(&OutputSpec, &mut FieldErrors),
    /// `None` exactly for a script kind, which brings its own runtime.
    build: Option<BuildSink>,
    /// How the form groups the parameters; those in none come first.
    pub sections: &'static [Section],
    /// What the form's Test does against the destination; `None`: the
    /// form shows what the output would write instead.
    test: Option<TestRun>,
}

/// A group of parameters on the form.
#[derive(Debug)]
pub struct Section {
    pub title: &'static str,
    /// Rarely set: shown folded unless one of them has a value or an error.
    pub collapsed: bool,
    pub names: &'static [&'static str],
}

/// A kind's Test: the definition as typed, the sample events (already
/// through the output's filters) and a cache that knows their names.
/// It contacts the destination for real.
pub type TestRun = for<'a> fn(&'a OutputSpec, &'a [Event], &'a Cache) -> BoxFuture<'a, TestReport>;

/// What a Test did, step by step, for the person who pressed the button.
#[derive(Debug, Default)]
pub struct TestReport {
    /// Each step and whether it went well.
    pub steps: Vec<(bool, String)>,
    /// What the test changed at the destination, said plainly.
    pub side_effects: Vec<String>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|(ok, _)| *ok)
    }
    pub fn ok(&mut self, text: impl Into<String>) {
        self.steps.push((true, text.into()));
    }
    pub fn failed(&mut self, text: impl Into<String>) {
        self.steps.push((false, text.into()));
    }
}

impl Kind {
    /// A kind whose events the worker batches and hands to the sink
    /// `build` makes.
    pub const fn batches(
        name: &'static str,
        description: &'static str,
        parameters: &'static [ParamSchema],
        check: fn(&OutputSpec, &mut FieldErrors),
        build: BuildSink,
    ) -> Kind {
        Kind {
            name,
            description,
            parameters,
            script: false,
            check,
            build: Some(build),
            sections: &[],
            test: None,
        }
    }

    /// The same kind, its form grouped in `sections`.
    pub const fn with_sections(mut self, sections: &'static [Section]) -> Kind {
        self.sections = sections;
        self
    }

    /// The same kind, whose Test contacts the destination with `test`.
    pub const fn with_test(mut self, test: TestRun) -> Kind {
        self.test = Some(test);
        self
    }

    /// The Test that contacts the destination, if the kind has one.
    pub fn test(&self) -> Option<TestRun> {
        self.test
    }

    /// A kind that runs a script with parameters of any name.
    pub const fn script(
        name: &'static str,
        description: &'static str,
        check: fn(&OutputSpec, &mut FieldErrors),
    ) -> Kind {
        Kind {
            name,
            description,
            parameters: &[],
            script: true,
            check,
            build: None,
            sections: &[],
            test: None,
        }
    }

    /// What builds this kind's sink; `None` for a script kind.
    pub fn build(&self) -> Option<BuildSink> {
        self.build
    }
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kind")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut kind = serializer.serialize_struct("Kind", 4)?;
        kind.serialize_field("name", self.name)?;
        kind.serialize_field("description", self.description)?;
        kind.serialize_field("parameters", self.parameters)?;
        kind.serialize_field("script", &self.script)?;
        kind.end()
    }
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
