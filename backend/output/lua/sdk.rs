//! The globals Centreon gives a script: `broker_log` (docs/lua-runtime.md
//! §3), `broker_cache` (§4) and the `broker` table (§5).

use std::path::Path;
use std::sync::Arc;

use md5::{Digest, Md5};
use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value as LuaValue};

use super::event::{to_table, LuaEvent, Shared};
use super::logfile::{LogFile, Rotation};
use super::{json, perfdata, EventJsonStyle};
use crate::cache::Cache;
use crate::event::{catalogue, Event, EventType, Value};
use crate::output::Secrets;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    /// The level as the script log shows it: `INFO`, `WARNING`, `ERROR`.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Error => "ERROR",
        }
    }

    pub fn header(self) -> &'static str {
        match self {
            Severity::Info => "INFO: ",
            Severity::Warning => "WARNING: ",
            Severity::Error => "ERROR: ",
        }
    }
}

/// Where `broker_log` writes when no file is set (Centreon's `lua` logger),
/// and where the runtime reports script errors.
pub type LogSink = Arc<dyn Fn(Severity, &str) + Send + Sync>;

/// `lua_tointeger`: integers, floats with an exact integer value and
/// numeric strings; anything else is 0.
pub fn to_integer(value: &LuaValue) -> i64 {
    match value {
        LuaValue::Integer(i) => *i,
        LuaValue::Number(x) if x.fract() == 0.0 && x.is_finite() => *x as i64,
        LuaValue::String(s) => {
            let text = s.to_string_lossy();
            let text = text.trim();
            text.parse::<i64>().ok().or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .filter(|x| x.fract() == 0.0 && x.is_finite())
                    .map(|x| x as i64)
            })
        }
        .unwrap_or(0),
        _ => 0,
    }
}

/// `lua_tostring`: strings and numbers; anything else is NULL.
pub fn to_text(value: &LuaValue) -> Option<Vec<u8>> {
    match value {
        LuaValue::String(s) => Some(s.as_bytes().to_vec()),
        LuaValue::Integer(i) => Some(i.to_string().into_bytes()),
        LuaValue::Number(x) => Some(json::lua_number(*x).into_bytes()),
        _ => None,
    }
}

fn type_name(value: Option<&LuaValue>) -> &'static str {
    match value {
        None => "no value",
        Some(v) => v.type_name(),
    }
}

/// `luaL_checkinteger` of argument `n` (1 = the first after `self`).
fn check_integer(args: &MultiValue, n: usize, function: &str) -> mlua::Result<i64> {
    let value = args.get(n - 1);
    let number = match value {
        Some(LuaValue::Integer(i)) => Some(*i),
        Some(LuaValue::Number(x)) if x.fract() == 0.0 && x.is_finite() => Some(*x as i64),
        Some(LuaValue::Number(_)) => {
            return Err(mlua::Error::runtime(format!(
                "bad argument #{n} to '{function}' (number has no integer representation)"
            )))
        }
        Some(v @ LuaValue::String(_)) => {
            let i = to_integer(v);
            (i != 0 || v.to_string().map(|s| s.trim() == "0").unwrap_or(false)).then_some(i)
        }
        _ => None,
    };
    number.ok_or_else(|| {
        mlua::Error::runtime(format!(
            "bad argument #{n} to '{function}' (number expected, got {})",
            type_name(value)
        ))
    })
}

// ---- broker_log

pub struct BrokerLog {
    level: i64,
    /// `None`: Centreon's logger mode, lines go to `sink`.
    file: Option<Arc<LogFile>>,
    sink: LogSink,
    /// Where the lines written to the file show too: the output's script
    /// log, so that an operator sees them without a shell on the server.
    mirror: Option<LogSink>,
    rotation: Rotation,
    /// The file's last write error, reported once rather than per line.
    reported: Option<String>,
    /// The output's passwords: the service writes the file, so it keeps
    /// them out of it as out of every other log (Centreon's library logs
    /// its curl commands, headers included).
    secrets: Secrets,
}

impl BrokerLog {
    /// Level 0 and the logger until `set_parameters` says otherwise:
    /// Centreon leaves the level uninitialised, which is 0 in practice.
    pub fn new(
        sink: LogSink,
        mirror: Option<LogSink>,
        rotation: Rotation,
        secrets: Secrets,
    ) -> Self {
        BrokerLog {
            level: 0,
            file: None,
            sink,
            mirror,
            rotation,
            reported: None,
            secrets,
        }
    }

    fn log(&mut self, severity: Severity, args: &MultiValue) -> mlua::Result<()> {
        let level = args.front().map(to_integer).unwrap_or(0);
        if level > self.level {
            return Ok(());
        }
        let text = args.get(1).and_then(to_text);
        let Some(file) = &self.file else {
            let Some(text) = text else {
                return Err(mlua::Error::runtime(
                    "broker_log: the text to log must be a string or a number",
                ));
            };
            (self.sink)(severity, &String::from_utf8_lossy(&text));
            return Ok(());
        };
        let text = text.as_deref().unwrap_or(b"(null)");
        let redacted;
        let text = if self.secrets.is_empty() {
            text
        } else {
            redacted = self
                .secrets
                .redact_owned(String::from_utf8_lossy(text).into_owned());
            redacted.as_bytes()
        };
        let mut line = c_locale_time_prefix().into_bytes();
        line.extend_from_slice(severity.header().as_bytes());
        line.extend_from_slice(text);
        line.push(b'\n');
        if let Some(mirror) = &self.mirror {
            mirror(severity, &String::from_utf8_lossy(text));
        }
        match file.append(&line, self.rotation) {
            Ok(()) => self.reported = None,
            Err(e) => {
                let error = e.to_string();
                if self.reported.as_ref() != Some(&error) {
                    let still = if self.mirror.is_some() {
                        "its lines are shown in the output's script log only"
                    } else {
                        "its lines are lost"
                    };
                    (self.sink)(
                        Severity::Error,
                        &format!(
                            "Unable to open the log file '{}': {error}; {still}",
                            file.path().display()
                        ),
                    );
                    self.reported = Some(error);
                }
            }
        }
        Ok(())
    }
}

/// `strftime("%c: ")` in the C locale, local time: `Fri Jan 26 08:31:49
/// 2018: `, the day padded with a space, always 26 characters.
pub fn c_locale_time_prefix() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    c_locale_time(now) + ": "
}

pub fn c_locale_time(t: libc::time_t) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // SAFETY: localtime_r only writes the tm we give it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return String::from("??? ??? ?? ??:??:?? ????");
    }
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[tm.tm_wday.clamp(0, 6) as usize],
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

impl UserData for BrokerLog {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("set_parameters", |_, this, args: MultiValue| {
            let level = args.front().map(to_integer).unwrap_or(0);
            if !(0..=3).contains(&level) {
                return Err(mlua::Error::runtime(
                    "set_parameters expects the first argument to be 0, 1, 2 or 3.",
                ));
            }
            // Centreon builds a std::string from a NULL path (undefined);
            // a Lua error says what is wrong instead.
            let file = args.get(1).and_then(to_text).ok_or_else(|| {
                mlua::Error::runtime(
                    "set_parameters expects the second argument to be a file path (\"\" for the broker log)",
                )
            })?;
            this.level = level;
            // An empty path is Centreon's "back to the broker logger".
            this.file = (!file.is_empty())
                .then(|| LogFile::open(Path::new(&*String::from_utf8_lossy(&file))));
            this.reported = None;
            Ok(())
        });
        methods.add_method_mut("info", |_, this, args: MultiValue| {
            this.log(Severity::Info, &args)
        });
        methods.add_method_mut("warning", |_, this, args: MultiValue| {
            this.log(Severity::Warning, &args)
        });
        methods.add_method_mut("error", |_, this, args: MultiValue| {
            this.log(Severity::Error, &args)
        });
    }
}

// ---- broker_cache

pub struct BrokerCache {
    cache: Arc<Cache>,
    api: u8,
}

impl BrokerCache {
    pub fn new(cache: Arc<Cache>, api: u8) -> Self {
        BrokerCache { cache, api }
    }

    fn event(&self, lua: &Lua, event: Arc<Event>) -> mlua::Result<LuaValue> {
        if self.api == 2 {
            Ok(LuaValue::UserData(
                lua.create_userdata(LuaEvent(Shared::Event(event)))?,
            ))
        } else {
            Ok(LuaValue::Table(to_table(lua, &event)?))
        }
    }
}

fn string_or_nil(lua: &Lua, s: Option<String>) -> mlua::Result<LuaValue> {
    match s {
        Some(s) => Ok(LuaValue::String(lua.create_string(s)?)),
        None => Ok(LuaValue::Nil),
    }
}

fn groups_table(lua: &Lua, groups: Vec<(i64, String)>) -> mlua::Result<Table> {
    let table = lua.create_table_with_capacity(groups.len(), 0)?;
    for (i, (id, name)) in groups.into_iter().enumerate() {
        let group = lua.create_table_with_capacity(0, 2)?;
        group.raw_set("group_id", id)?;
        group.raw_set("group_name", name)?;
        table.raw_set(i as i64 + 1, group)?;
    }
    Ok(table)
}

/// A pb event built from named values, for the v2 answers of `get_ba`,
/// `get_bv` and `get_metric_mapping`.
fn pb_event(ty: EventType, values: &[(&str, Option<Value>)]) -> Option<Arc<Event>> {
    let mut event = Event::new(catalogue::by_type(ty)?);
    for (key, value) in values {
        if let Some(v) = value {
            event.set(key, v.clone());
        }
    }
    Some(Arc::new(event))
}

/// A method whose optional service id defaults to 0, answering the service
/// field when it is not 0 and the host field otherwise.
fn object_field(
    lua: &Lua,
    cache: &Cache,
    args: &MultiValue,
    function: &str,
    field: &str,
) -> mlua::Result<LuaValue> {
    let host_id = check_integer(args, 1, function)?;
    let service_id = if args.len() >= 2 {
        check_integer(args, 2, function)?
    } else {
        0
    };
    let object = if service_id != 0 {
        cache.service(host_id, service_id)
    } else {
        cache.host(host_id)
    };
    let value = object.and_then(|o| o.get(field).and_then(Value::as_str).map(str::to_owned));
    string_or_nil(lua, value)
}

impl UserData for BrokerCache {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get_hostname", |lua, this, args: MultiValue| {
            let host_id = check_integer(&args, 1, "get_hostname")?;
            string_or_nil(lua, this.cache.host_name(host_id))
        });
        methods.add_method("get_service_description", |lua, this, args: MultiValue| {
            let host_id = check_integer(&args, 1, "get_service_description")?;
            let service_id = check_integer(&args, 2, "get_service_description")?;
            string_or_nil(lua, this.cache.service_description(host_id, service_id))
        });
        methods.add_method("get_host", |lua, this, args: MultiValue| {
            let host_id = check_integer(&args, 1, "get_host")?;
            match this.cache.host(host_id) {
                Some(host) => this.event(lua, host),
                None => Ok(LuaValue::Nil),
            }
        });
        methods.add_method("get_service", |lua, this, args: MultiValue| {
            let host_id = check_integer(&args, 1, "get_service")?;
            let service_id = check_integer(&args, 2, "get_service")?;
            match this.cache.service(host_id, service_id) {
                Some(service) => this.event(lua, service),
                None => Ok(LuaValue::Nil),
            }
        });
        methods.add_method("get_index_mapping", |lua, this, args: MultiValue| {
            let index_id = check_integer(&args, 1, "get_index_mapping")?;
            match this.cache.index_mapping(index_id) {
                Some(m) => {
                    let t = lua.create_table_with_capacity(0, 3)?;
                    t.raw_set("index_id", m.index_id)?;
                    t.raw_set("host_id", m.host_id)?;
                    t.raw_set("service_id", m.service_id)?;
                    Ok(LuaValue::Table(t))
                }
                None => Ok(LuaValue::Nil),
            }
        });
        methods.add_method("get_metric_mapping", |lua, this, args: MultiValue| {
            let metric_id = check_integer(&args, 1, "get_metric_mapping")?;
            let Some(m) = this.cache.metric_mapping(metric_id) else {
                return Ok(LuaValue::Nil);
            };
            if this.api == 2 {
                let event = pb_event(
                    EventType::new(3, 12),
                    &[
                        ("index_id", Some(Value::Int(m.index_id))),
                        ("metric_id", Some(Value::Int(m.metric_id))),
                    ],
                );
                return match event {
                    Some(e) => this.event(lua, e),
                    None => Ok(LuaValue::Nil),
                };
            }
            let t = lua.create_table_with_capacity(0, 2)?;
            t.raw_set("metric_id", m.metric_id)?;
            t.raw_set("index_id", m.index_id)?;
            Ok(LuaValue::Table(t))
        });
        methods.add_method("get_instance_name", |lua, this, args: MultiValue| {
            let id = check_integer(&args, 1, "get_instance_name")?;
            string_or_nil(lua, this.cache.instance_name(id))
        });
        methods.add_method("get_hostgroup_name", |lua, this, args: MultiValue| {
            let id = check_integer(&args, 1, "get_hostgroup_name")?;
            string_or_nil(lua, this.cache.hostgroup(id).map(|g| g.name))
        });
        methods.add_method("get_hostgroup_alias", |lua, this, args: MultiValue| {
            let id = check_integer(&args, 1, "get_hostgroup_alias")?;
            string_or_nil(lua, this.cache.hostgroup(id).map(|g| g.alias))
        });
        methods.add_method("get_hostgroups", |lua, this, args: MultiValue| {
            let host_id = check_integer(&args, 1, "get_hostgroups")?;
            groups_table(lua, this.cache.hostgroups_of(host_id))
        });
        methods.add_method("get_servicegroup_name", |lua, this, args: MultiValue| {
            let id = check_integer(&args, 1, "get_servicegroup_name")?;
            string_or_nil(lua, this.cache.servicegroup(id).map(|g| g.name))
        });
        methods.add_method("get_servicegroups", |lua, this, args: MultiValue| {
            let host_id = check_integer(&args, 1, "get_servicegroups")?;
            let service_id = check_integer(&args, 2, "get_servicegroups")?;
            groups_table(lua, this.cache.servicegroups_of(host_id, service_id))
        });
        for (name, field) in [
            ("get_action_url", "action_url"),
            ("get_notes", "notes"),
            ("get_notes_url", "notes_url"),
            ("get_check_command", "check_command"),
        ] {
            methods.add_method(name, move |lua, this, args: MultiValue| {
                object_field(lua, &this.cache, &args, name, field)
            });
        }
        methods.add_method("get_severity", |_, this, args: MultiValue| {
            let host_id = check_integer(&args, 1, "get_severity")?;
            let service_id = if args.len() >= 2 {
                check_integer(&args, 2, "get_severity")?
            } else {
                0
            };
            Ok(this.cache.severity(host_id, service_id))
        });
        methods.add_method("get_ba", |lua, this, args: MultiValue| {
            let ba_id = check_integer(&args, 1, "get_ba")?;
            let Some(ba) = this.cache.ba(ba_id) else {
                return Ok(LuaValue::Nil);
            };
            let get = |k: &str| ba.get(k).cloned();
            if this.api == 2 {
                let event = pb_event(
                    EventType::new(6, 25),
                    &[
                        ("ba_id", get("ba_id")),
                        ("ba_name", get("ba_name")),
                        ("ba_description", get("ba_description")),
                        ("sla_month_percent_crit", get("sla_month_percent_crit")),
                        ("sla_month_percent_warn", get("sla_month_percent_warn")),
                        (
                            "sla_duration_crit",
                            get("sla_duration_crit").or(get("sla_month_duration_crit")),
                        ),
                        (
                            "sla_duration_warn",
                            get("sla_duration_warn").or(get("sla_month_duration_warn")),
                        ),
                    ],
                );
                return match event {
                    Some(e) => this.event(lua, e),
                    None => Ok(LuaValue::Nil),
                };
            }
            let t = lua.create_table_with_capacity(0, 3)?;
            for key in ["ba_id", "ba_name", "ba_description"] {
                if let Some(v) = ba.get(key) {
                    t.raw_set(key, super::event::value_to_lua(lua, v)?)?;
                }
            }
            Ok(LuaValue::Table(t))
        });
        methods.add_method("get_bv", |lua, this, args: MultiValue| {
            let bv_id = check_integer(&args, 1, "get_bv")?;
            let Some(bv) = this.cache.bv(bv_id) else {
                return Ok(LuaValue::Nil);
            };
            let get = |k: &str| bv.get(k).cloned();
            if this.api == 2 {
                let event = pb_event(
                    EventType::new(6, 22),
                    &[
                        ("bv_id", get("bv_id")),
                        ("bv_name", get("bv_name")),
                        ("bv_description", get("bv_description")),
                    ],
                );
                return match event {
                    Some(e) => this.event(lua, e),
                    None => Ok(LuaValue::Nil),
                };
            }
            let t = lua.create_table_with_capacity(0, 3)?;
            for key in ["bv_id", "bv_name", "bv_description"] {
                if let Some(v) = bv.get(key) {
                    t.raw_set(key, super::event::value_to_lua(lua, v)?)?;
                }
            }
            Ok(LuaValue::Table(t))
        });
        methods.add_method("get_bvs", |lua, this, args: MultiValue| {
            let ba_id = check_integer(&args, 1, "get_bvs")?;
            lua.create_sequence_from(this.cache.bvs_of(ba_id))
        });
    }
}

// ---- broker

/// `url_encode`: every byte but `[A-Za-z0-9-_.~]` as `%XX`, uppercase,
/// up to the first NUL byte (Centreon passes a C string).
pub fn url_encode(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    crate::encoding::url_encode(&bytes[..end])
}

/// Whitespace and `=` are skipped anywhere; another character outside the
/// alphabet is an error (a Lua error here; Centreon's is undefined).
pub fn base64_decode(text: &[u8]) -> Result<Vec<u8>, String> {
    crate::encoding::base64_decode_lenient(text).ok_or_else(|| {
        format!(
            "This string '{}' contains characters not legal in a base64 encoded string.",
            String::from_utf8_lossy(text)
        )
    })
}

/// The last argument, which is what Centreon reads (`-1` on the stack).
fn last(args: &MultiValue) -> Option<&LuaValue> {
    args.iter().last()
}

fn last_text(args: &MultiValue, function: &str) -> mlua::Result<Vec<u8>> {
    last(args).and_then(to_text).ok_or_else(|| {
        mlua::Error::runtime(format!(
            "bad argument #1 to '{function}' (string expected, got {})",
            type_name(last(args))
        ))
    })
}

/// The `broker` table.
pub fn broker_table(
    lua: &Lua,
    bbdo_version: &str,
    style: EventJsonStyle,
    precision: perfdata::Precision,
    log: LogSink,
) -> mlua::Result<Table> {
    let broker = lua.create_table()?;
    broker.set(
        "json_encode",
        lua.create_function(move |lua, args: MultiValue| {
            let value = last(&args).cloned().unwrap_or(LuaValue::Nil);
            match json::encode(&value, style)? {
                Ok(text) => Ok(MultiValue::from_vec(vec![LuaValue::String(
                    lua.create_string(text)?,
                )])),
                // Centreon logs it and returns nothing.
                Err(unencodable) => {
                    log(Severity::Error, &format!("lua: {unencodable}"));
                    Ok(MultiValue::new())
                }
            }
        })?,
    )?;
    broker.set(
        "json_decode",
        lua.create_function(|lua, args: MultiValue| {
            let text = last_text(&args, "json_decode")?;
            let (value, error) = json::decode(lua, &text)?;
            Ok(match error {
                None => MultiValue::from_vec(vec![value]),
                Some(e) => MultiValue::from_vec(vec![
                    LuaValue::Nil,
                    LuaValue::String(lua.create_string(e)?),
                ]),
            })
        })?,
    )?;
    broker.set(
        "parse_perfdata",
        lua.create_function(move |lua, args: MultiValue| {
            let text = args.front().and_then(to_text).unwrap_or_default();
            let full = args
                .get(1)
                .is_some_and(|v| v.as_boolean() != Some(false) && !v.is_nil());
            let metrics = perfdata::parse(&String::from_utf8_lossy(&text), precision);
            perfdata_table(lua, &metrics, full)
        })?,
    )?;
    broker.set(
        "url_encode",
        lua.create_function(|_, args: MultiValue| {
            Ok(url_encode(&last_text(&args, "url_encode")?))
        })?,
    )?;
    broker.set(
        "base64_encode",
        lua.create_function(|_, args: MultiValue| {
            Ok(crate::encoding::base64_encode(&last_text(
                &args,
                "base64_encode",
            )?))
        })?,
    )?;
    broker.set(
        "base64_decode",
        lua.create_function(|lua, args: MultiValue| {
            let decoded =
                base64_decode(&last_text(&args, "base64_decode")?).map_err(mlua::Error::runtime)?;
            lua.create_string(decoded)
        })?,
    )?;
    broker.set(
        "md5",
        lua.create_function(|_, args: MultiValue| {
            let text = last_text(&args, "md5")?;
            let digest = Md5::digest(&text);
            Ok(digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>())
        })?,
    )?;
    broker.set(
        "stat",
        lua.create_function(|lua, args: MultiValue| {
            use std::os::unix::fs::MetadataExt;
            let path = last_text(&args, "stat")?;
            let path = String::from_utf8_lossy(&path).into_owned();
            match std::fs::metadata(&path) {
                Ok(m) => {
                    let t = lua.create_table_with_capacity(0, 6)?;
                    t.raw_set("uid", i64::from(m.uid()))?;
                    t.raw_set("gid", i64::from(m.gid()))?;
                    t.raw_set("size", m.size() as i64)?;
                    t.raw_set("atime", m.atime())?;
                    t.raw_set("mtime", m.mtime())?;
                    t.raw_set("ctime", m.ctime())?;
                    Ok((LuaValue::Table(t), LuaValue::Nil))
                }
                Err(e) => Ok((
                    LuaValue::Nil,
                    LuaValue::String(lua.create_string(strerror(&e))?),
                )),
            }
        })?,
    )?;
    let version = bbdo_version.to_owned();
    broker.set(
        "bbdo_version",
        lua.create_function(move |_, ()| Ok(version.clone()))?,
    )?;
    Ok(broker)
}

/// `strerror(errno)`: the message without Rust's " (os error N)".
fn strerror(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// What `broker.parse_perfdata` returns (docs/lua-runtime.md §5.3).
fn perfdata_table(lua: &Lua, metrics: &[perfdata::Metric], full: bool) -> mlua::Result<Table> {
    let table = lua.create_table()?;
    for m in metrics {
        if !full {
            table.raw_set(m.label.as_str(), m.value)?;
            continue;
        }
        let t = lua.create_table()?;
        let n = perfdata::names(&m.label);
        t.raw_set("value", m.value)?;
        t.raw_set("uom", m.uom.as_str())?;
        t.raw_set("metric_name", n.metric_name)?;
        t.raw_set("instance", n.instance)?;
        t.raw_set("metric_unit", n.metric_unit)?;
        t.raw_set("metric_fields", lua.create_sequence_from(n.metric_fields)?)?;
        t.raw_set("subinstance", lua.create_sequence_from(n.subinstance)?)?;
        t.raw_set("min", m.min)?;
        t.raw_set("max", m.max)?;
        t.raw_set("warning_high", m.warning_high)?;
        t.raw_set("warning_low", m.warning_low)?;
        t.raw_set("warning_mode", m.warning_mode)?;
        t.raw_set("critical_high", m.critical_high)?;
        t.raw_set("critical_low", m.critical_low)?;
        t.raw_set("critical_mode", m.critical_mode)?;
        table.raw_set(m.label.as_str(), t)?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::base64_encode;

    #[test]
    fn url_encode_keeps_unreserved_bytes() {
        assert_eq!(
            url_encode("La leçon du château de l'araignée".as_bytes()),
            "La%20le%C3%A7on%20du%20ch%C3%A2teau%20de%20l%27araign%C3%A9e"
        );
        assert_eq!(
            url_encode(b"A.a-b_B:c/C?d=D&e~"),
            "A.a-b_B%3Ac%2FC%3Fd%3DD%26e~"
        );
    }

    #[test]
    fn base64_round_trips_and_skips_padding_and_spaces() {
        assert_eq!(
            base64_encode(b"Hello World from Broker!"),
            "SGVsbG8gV29ybGQgZnJvbSBCcm9rZXIh"
        );
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_decode(b"YW\nI=").unwrap(), b"ab");
        assert_eq!(base64_decode(b"Y=Q==").unwrap(), b"a");
        assert!(base64_decode(b"a*b").is_err());
    }

    #[test]
    fn the_time_prefix_is_the_c_locale_one() {
        // 1970-01-01 is a Thursday; the day is padded with a space.
        let text = c_locale_time(0);
        assert_eq!(text.len(), 24, "{text}");
        assert!(text.starts_with("Thu Jan  1 ") || text.starts_with("Wed Dec 31 "));
    }
}
