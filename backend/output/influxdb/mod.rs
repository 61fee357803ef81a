//! The `influxdb` output: metrics (and optionally status perfdata) as line
//! protocol to InfluxDB 1.x `/write` or 2.x `/api/v2/write`. Parameter
//! names follow the script of Centreon's InfluxDB guide.
//!
//! Answers, as InfluxData documents them for the write endpoints
//! ("Troubleshoot issues writing data", v1 "/write HTTP endpoint" and the
//! v2 API response codes), read by the default [`http::judge`]:
//! 204 written; 400 malformed line protocol (or, in 1.x, a partial write:
//! a field type conflict, points beyond the retention policy), the whole
//! batch rejected → dead letter; 422 (2.x) points well-formed but
//! unprocessable (outside the bucket's retention) → dead letter; 401
//! missing or wrong credentials and 403 no write permission → retried;
//! 404 database, organization or bucket not found → retried; 413 body over
//! the server's limit (1.x `max-body-size`, default 25 MB) → retried,
//! saying to lower `max_buffer_bytes` (a batch is not split); 429 and 5xx
//! → retried.

pub mod encoder;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Url;

use super::http::{self, Request, Service};
use futures::future::BoxFuture;

use super::schema::{
    string_param as string, Kind, ParamSchema, Section, TestReport, BUFFER_AGE, BUFFER_SIZE,
};
use super::sink::{BuildContext, Sink};
use super::{FieldErrors, OutputSpec, ParamType};
use crate::cache::Cache;
use crate::event::Event;
use encoder::{Encoder, Precision};

pub static KIND: Kind = Kind::batches(
    "influxdb",
    "Writes metrics (and optionally status perfdata) as line protocol to InfluxDB 1.x `/write` or 2.x `/api/v2/write`: measurement = service description, tag `host` = host name, field = metric name.",
    PARAMETERS,
    check,
    build,
)
.with_sections(&[
    Section {
        title: "Authentication",
        collapsed: false,
        names: &["influx_user", "influx_password", "influx_org", "influx_bucket", "influx_token"],
    },
    http::BATCHING,
    http::TLS,
    http::PROXY_SECTION,
])
.with_test(test);

/// `/ping` (which both InfluxDB 1.x and 2.x answer with 204), then the
/// sample's points written where the output writes them.
fn test<'a>(
    spec: &'a OutputSpec,
    events: &'a [Event],
    cache: &'a Cache,
) -> BoxFuture<'a, TestReport> {
    Box::pin(http::test(spec, Influx::from_spec(spec), events, cache))
}

fn build(spec: &OutputSpec, context: &BuildContext) -> Result<Box<dyn Sink>, String> {
    http::sink(spec, context, Influx::from_spec(spec)?)
}

pub const PARAMETERS: &[ParamSchema] = &[
    string("http_server_address", true, None, &[], "InfluxDB's host name or address."),
    ParamSchema {
        name: "http_server_port",
        ty: ParamType::Number,
        required: false,
        default: Some("8086"),
        help: "InfluxDB's HTTP port.",
        secret: false,
        choices: &[],
        min: Some(1.0),
    },
    string("http_server_protocol", false, Some("http"), &["http", "https"], "`http` or `https`."),
    string(
        "influx_api",
        false,
        Some("v1"),
        &["v1", "v2"],
        "`v1`: InfluxDB 1.x `/write` (database, retention policy, user, password). `v2`: `/api/v2/write` (org, bucket, token).",
    ),
    string("influx_database", false, None, &[], "v1: the database to write to."),
    string("influx_retention_policy", false, None, &[], "v1: the retention policy; the database's default when empty."),
    string("influx_user", false, None, &[], "v1: the user (Basic authentication)."),
    http::secret("influx_password", "v1: the user's password."),
    string("influx_org", false, None, &[], "v2: the organization."),
    string("influx_bucket", false, None, &[], "v2: the bucket."),
    http::secret("influx_token", "v2: the API token."),
    string(
        "influx_precision",
        false,
        Some("s"),
        &["s", "ms", "us", "ns"],
        "The precision timestamps are written in (Centreon's times are whole seconds).",
    ),
    ParamSchema {
        name: "influx_status_perfdata",
        ty: ParamType::Number,
        required: false,
        default: Some("0"),
        help: "1: also write the perfdata of service and host statuses, one point per status (time `last_check`).",
        secret: false,
        choices: &["0", "1"],
        min: Some(0.0),
    },
    BUFFER_SIZE,
    BUFFER_AGE,
    http::BUFFER_BYTES,
    http::TIMEOUT,
    http::GZIP,
    http::VERIFY_PEER,
    http::VERIFY_HOST,
    http::CA_FILE,
    http::CLIENT_CERT,
    http::CLIENT_KEY,
    http::PROXY,
    http::PROXY_USER,
    http::PROXY_PASSWORD,
];

fn value<'a>(spec: &'a OutputSpec, name: &str) -> Option<&'a str> {
    spec.value(name).map(str::trim).filter(|v| !v.is_empty())
}

/// The kind's own rules, once every parameter fits its schema.
pub fn check(spec: &OutputSpec, errors: &mut FieldErrors) {
    if value(spec, "http_server_address").is_none() {
        errors.add("parameters.http_server_address", "must not be empty");
    }
    let required: &[&str] = match value(spec, "influx_api") {
        Some("v2") => &["influx_org", "influx_bucket", "influx_token"],
        _ => &["influx_database"],
    };
    for name in required {
        if value(spec, name).is_none() {
            errors.add(
                format!("parameters.{name}"),
                format!(
                    "is required with influx_api `{}`",
                    value(spec, "influx_api").unwrap_or("v1")
                ),
            );
        }
    }
    if errors.is_empty() {
        if let Err(e) = Influx::from_spec(spec) {
            errors.add("parameters.http_server_address", e);
        }
    }
}

/// The encoder and the request builder of an `influxdb` output.
pub struct Influx {
    encoder: Encoder,
    url: Url,
    authorization: Option<HeaderValue>,
}

impl Influx {
    pub fn from_spec(spec: &OutputSpec) -> Result<Influx, String> {
        let address = value(spec, "http_server_address").ok_or("http_server_address is empty")?;
        let port = value(spec, "http_server_port")
            .and_then(|p| p.parse::<f64>().ok())
            .filter(|p| *p >= 1.0 && *p <= 65535.0 && p.fract() == 0.0)
            .ok_or("http_server_port must be a port number")? as u16;
        let protocol = value(spec, "http_server_protocol").unwrap_or("http");
        let precision = value(spec, "influx_precision")
            .and_then(Precision::parse)
            .unwrap_or(Precision::Seconds);
        let host = if address.contains(':') && !address.starts_with('[') {
            format!("[{address}]")
        } else {
            address.to_owned()
        };
        let v2 = value(spec, "influx_api") == Some("v2");
        let path = if v2 { "/api/v2/write" } else { "/write" };
        let mut url = Url::parse(&format!("{protocol}://{host}:{port}{path}"))
            .map_err(|e| format!("does not make a URL: {e}"))?;
        let authorization = {
            let mut query = url.query_pairs_mut();
            if v2 {
                query.append_pair("org", value(spec, "influx_org").unwrap_or(""));
                query.append_pair("bucket", value(spec, "influx_bucket").unwrap_or(""));
                query.append_pair("precision", precision.as_query());
                let token = spec.value("influx_token").unwrap_or("");
                Some(http::secret_header(&format!("Token {token}"))?)
            } else {
                query.append_pair("db", value(spec, "influx_database").unwrap_or(""));
                if let Some(rp) = value(spec, "influx_retention_policy") {
                    query.append_pair("rp", rp);
                }
                query.append_pair("precision", precision.as_query());
                // In a header rather than the `u`/`p` query parameters, so
                // that the password never appears in a URL or an error.
                match value(spec, "influx_user") {
                    Some(user) => Some(http::basic_auth(
                        user,
                        spec.value("influx_password").unwrap_or(""),
                    )?),
                    None => None,
                }
            }
        };
        Ok(Influx {
            encoder: Encoder::new(precision, http::flag(spec, "influx_status_perfdata")),
            url,
            authorization,
        })
    }
}

impl Service for Influx {
    fn encode(&mut self, event: &Event, cache: &Cache, out: &mut Vec<u8>) {
        self.encoder.encode(event, cache, out);
    }

    /// Line protocol: each point ends its line.
    fn records_end_with_newline(&self) -> bool {
        true
    }

    fn request(&self, records: &[&[u8]]) -> Result<Request, String> {
        let mut headers = http::headers("text/plain; charset=utf-8", &[]);
        if let Some(auth) = &self.authorization {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        Ok(Request {
            url: self.url.clone(),
            headers,
            method: reqwest::Method::POST,
            body: records.concat(),
        })
    }

    fn health(&self) -> Option<Request> {
        let mut url = self.url.clone();
        url.set_path("/ping");
        url.set_query(None);
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(auth) = &self.authorization {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        Some(Request {
            method: reqwest::Method::GET,
            url,
            headers,
            body: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Parameter;

    fn spec(params: &[(&str, &str)]) -> OutputSpec {
        let mut spec = OutputSpec::blank("influx");
        spec.kind = "influxdb".into();
        spec.parameters = params
            .iter()
            .map(|(name, value)| Parameter {
                name: (*name).into(),
                ty: if name.ends_with("password") || name.ends_with("token") {
                    ParamType::Password
                } else if *name == "http_server_port" {
                    ParamType::Number
                } else {
                    ParamType::String
                },
                value: (*value).into(),
            })
            .collect();
        spec
    }

    #[test]
    fn v1_url_and_basic_authentication() {
        let influx = Influx::from_spec(&spec(&[
            ("http_server_address", "127.0.0.1"),
            ("influx_database", "centreon"),
            ("influx_retention_policy", "week"),
            ("influx_user", "u"),
            ("influx_password", "p"),
        ]))
        .unwrap();
        assert_eq!(
            influx.url.as_str(),
            "http://127.0.0.1:8086/write?db=centreon&rp=week&precision=s"
        );
        let auth = influx.authorization.unwrap();
        assert_eq!(auth.to_str().unwrap(), "Basic dTpw");
        assert!(auth.is_sensitive());
    }

    #[test]
    fn v2_url_and_token() {
        let influx = Influx::from_spec(&spec(&[
            ("http_server_address", "influx.example"),
            ("http_server_protocol", "https"),
            ("influx_api", "v2"),
            ("influx_org", "my org"),
            ("influx_bucket", "b"),
            ("influx_token", "t0k"),
            ("influx_precision", "ms"),
        ]))
        .unwrap();
        assert_eq!(
            influx.url.as_str(),
            "https://influx.example:8086/api/v2/write?org=my+org&bucket=b&precision=ms"
        );
        assert_eq!(influx.authorization.unwrap().to_str().unwrap(), "Token t0k");
    }

    #[test]
    fn versions_require_their_parameters() {
        let mut errors = FieldErrors::default();
        check(&spec(&[("http_server_address", "h")]), &mut errors);
        assert_eq!(errors.0[0].0, "parameters.influx_database");
        let mut errors = FieldErrors::default();
        check(
            &spec(&[("http_server_address", "h"), ("influx_api", "v2")]),
            &mut errors,
        );
        let fields: Vec<_> = errors.0.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "parameters.influx_org",
                "parameters.influx_bucket",
                "parameters.influx_token"
            ]
        );
    }
}
