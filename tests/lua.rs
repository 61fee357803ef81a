//! The Lua runtime against its contract (docs/lua-runtime.md): the
//! cbd-21.10 golden lines, the lifecycle, acknowledgement counting, the SDK,
//! the guide's example scripts, and `lua` outputs run by the service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brokerstream::cache::Cache;
use brokerstream::config::Config;
use brokerstream::event::Event;
use brokerstream::output::lua::event::Shared;
use brokerstream::output::lua::logfile::Rotation;
use brokerstream::output::lua::runtime::{Script, ScriptEnv};
use brokerstream::output::lua::sdk::Severity;
use brokerstream::output::lua::{EventJsonStyle, LuaSettings};
use brokerstream::output::{ParamType, Parameter};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// A script directory with scripts in it, and what their runtime needs.
/// Also used by tests/lua_fallbacks.rs.
pub(crate) struct Lab {
    dir: tempfile::TempDir,
    cache: Arc<Cache>,
    pub(crate) settings: LuaSettings,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Lab {
    pub(crate) fn new() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let settings = LuaSettings {
            script_dirs: vec![dir.path().to_owned()],
            ..LuaSettings::for_data_dir(dir.path())
        };
        Lab {
            dir,
            cache: Cache::new(),
            settings,
            logs: Arc::default(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self) -> ScriptEnv {
        let logs = Arc::clone(&self.logs);
        ScriptEnv {
            cache: Arc::clone(&self.cache),
            settings: Arc::new(self.settings.clone()),
            log: Arc::new(move |severity: Severity, text: &str| {
                logs.lock()
                    .unwrap()
                    .push(format!("{}{text}", severity.header()))
            }),
            file_log: None,
            interrupt: brokerstream::output::lua::interrupt::Interrupt::new(),
            trace: None,
        }
    }

    pub(crate) fn try_load(&self, source: &str, params: &[(&str, &str)]) -> Result<Script, String> {
        let path = self.path("script.lua");
        std::fs::write(&path, source).unwrap();
        Script::load(&path, &string_params(params), &self.env())
    }

    pub(crate) fn load(&self, source: &str, params: &[(&str, &str)]) -> Script {
        self.try_load(source, params)
            .unwrap_or_else(|e| panic!("script does not load: {e}"))
    }

    fn load_file(&self, file: &str, params: &[(&str, &str)]) -> Script {
        Script::load(
            &data(&format!("lua/{file}")),
            &string_params(params),
            &self.env(),
        )
        .unwrap_or_else(|e| panic!("{file} does not load: {e}"))
    }

    pub(crate) fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }
}

fn string_params(params: &[(&str, &str)]) -> Vec<Parameter> {
    params
        .iter()
        .map(|(name, value)| Parameter {
            name: (*name).to_owned(),
            ty: ParamType::String,
            value: (*value).to_owned(),
        })
        .collect()
}

fn ev(json: Value) -> Shared {
    Shared::Event(Arc::new(Event::from_json(&json).unwrap()))
}

/// Evaluates a Lua expression in the script's state (after init).
pub(crate) fn eval<T: mlua::FromLua>(script: &Script, expression: &str) -> T {
    script
        .lua()
        .load(format!("return {expression}"))
        .eval()
        .unwrap_or_else(|e| panic!("{expression}: {e}"))
}

fn eval_err(script: &Script, expression: &str) -> String {
    match script
        .lua()
        .load(format!("return {expression}"))
        .eval::<mlua::Value>()
    {
        Ok(v) => panic!("{expression} did not fail: {v:?}"),
        Err(e) => e.to_string(),
    }
}

const MINIMAL: &str = "function init(conf) end\nfunction write(d) return true end\n";

fn v1_events() -> Vec<Event> {
    std::fs::read_to_string(data("cbd-21.10/events-api-v1.jsonl"))
        .unwrap()
        .lines()
        .map(|l| Event::from_json(&serde_json::from_str(l).unwrap()).unwrap())
        .collect()
}

// ---- golden: the cbd-21.10 capture

#[test]
fn golden_api_v2_json_encode_is_byte_for_byte_the_broker_s() {
    let mut lab = Lab::new();
    lab.settings.event_json = EventJsonStyle::Legacy2110;
    let out = lab.path("out.jsonl");
    let mut script = lab.load_file("json_lines_v2.lua", &[("file", out.to_str().unwrap())]);
    assert_eq!(script.api_version(), 2);
    for event in v1_events() {
        assert_eq!(script.write(&Shared::Event(Arc::new(event))).acked, 1);
    }
    let expected = std::fs::read_to_string(data("cbd-21.10/events-api-v2.jsonl")).unwrap();
    let got = std::fs::read_to_string(&out).unwrap();
    for (n, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
        assert_eq!(g, e, "line {}", n + 1);
    }
    assert_eq!(got.lines().count(), 953);
    assert_eq!(got, expected);
}

#[test]
fn golden_api_v1_json_encode_gives_the_broker_s_objects() {
    let lab = Lab::new();
    let out = lab.path("out.jsonl");
    let mut script = lab.load_file("json_lines.lua", &[("file", out.to_str().unwrap())]);
    assert_eq!(script.api_version(), 1);
    for event in v1_events() {
        script.write(&Shared::Event(Arc::new(event)));
    }
    let expected = std::fs::read_to_string(data("cbd-21.10/events-api-v1.jsonl")).unwrap();
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(got.lines().count(), 953);
    for (n, (g, e)) in got.lines().zip(expected.lines()).enumerate() {
        let g: Value = serde_json::from_str(g).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        let e: Value = serde_json::from_str(e).unwrap();
        assert_eq!(g, e, "line {}", n + 1);
    }
}

#[test]
fn the_current_event_json_header_has_no_spaces() {
    let lab = Lab::new();
    let script = lab.load(&format!("broker_api_version = 2\n{MINIMAL}"), &[]);
    let event = ev(
        json!({"_type": 65559, "host_id": 1, "service_id": 2, "description": "foo bar", "notes_url": "d:\\\\bonjour le \"monde\"", "check_interval": 0.0, "last_check": 123456}),
    );
    script
        .lua()
        .globals()
        .set(
            "e",
            script
                .lua()
                .create_userdata(brokerstream::output::lua::event::LuaEvent(event))
                .unwrap(),
        )
        .unwrap();
    let text: String = eval(&script, "broker.json_encode(e)");
    assert_eq!(
        text,
        r#"{"_type":65559, "category":1, "element":23, "check_interval":0, "host_id":1, "service_id":2, "last_check":"123456", "notes_url":"d:\\\\bonjour le \"monde\"", "description":"foo bar"}"#
    );
}

// ---- lifecycle (docs/lua-runtime.md §2.1)

#[test]
fn init_and_write_are_required() {
    let lab = Lab::new();
    let e = lab
        .try_load("function write(d) return true end", &[])
        .err()
        .unwrap();
    assert!(e.ends_with("init() global function is missing"), "{e}");
    let e = lab.try_load("function init() end", &[]).err().unwrap();
    assert!(e.ends_with("write() global function is missing"), "{e}");
}

#[test]
fn a_syntax_error_names_the_line() {
    let lab = Lab::new();
    let e = lab
        .try_load(
            "function init(conf) end\n\nfunction write(d)\n  return = true\nend\n",
            &[],
        )
        .err()
        .unwrap();
    assert!(
        e.starts_with("lua: '") && e.contains("could not be loaded"),
        "{e}"
    );
    assert!(e.contains("script.lua:4:"), "{e}");
}

#[test]
fn a_runtime_error_in_the_main_chunk_keeps_the_lua_message() {
    let lab = Lab::new();
    let e = lab
        .try_load("local a\nlocal b = 18 / a[4]\n", &[])
        .err()
        .unwrap();
    assert!(e.contains("could not be compiled"), "{e}");
    assert!(e.contains("script.lua:2:"), "{e}");
}

#[test]
fn sdk_globals_do_not_exist_while_the_main_chunk_runs() {
    let lab = Lab::new();
    let e = lab
        .try_load(&format!("broker_log:info(0, 'top')\n{MINIMAL}"), &[])
        .err()
        .unwrap();
    assert!(e.contains("could not be compiled"), "{e}");
    let script = lab.load(
        "seen = { type(broker), type(broker_log), type(broker_cache) }\n\
             in_init = nil\n\
             function init(conf) in_init = type(broker) .. type(broker_log) .. type(broker_cache) end\n\
             function write(d) return true end",
        &[],
    );
    assert_eq!(
        eval::<String>(&script, "table.concat(seen, ',')"),
        "nil,nil,nil"
    );
    assert_eq!(eval::<String>(&script, "in_init"), "tableuserdatauserdata");
}

#[test]
fn init_gets_the_parameters_with_their_types() {
    let lab = Lab::new();
    let path = lab.path("script.lua");
    std::fs::write(
        &path,
        "function init(conf) got = conf end\nfunction write(d) return true end",
    )
    .unwrap();
    let params = vec![
        Parameter {
            name: "s".into(),
            ty: ParamType::String,
            value: "text".into(),
        },
        Parameter {
            name: "i".into(),
            ty: ParamType::Number,
            value: "42".into(),
        },
        Parameter {
            name: "f".into(),
            ty: ParamType::Number,
            value: "2.5".into(),
        },
        Parameter {
            name: "p".into(),
            ty: ParamType::Password,
            value: "secret".into(),
        },
        Parameter {
            name: "s".into(),
            ty: ParamType::String,
            value: "second".into(),
        },
    ];
    let script = Script::load(&path, &params, &lab.env()).unwrap();
    assert_eq!(
        eval::<String>(&script, "got.s"),
        "text",
        "the first of duplicates wins"
    );
    assert_eq!(eval::<String>(&script, "math.type(got.i)"), "integer");
    assert_eq!(eval::<String>(&script, "math.type(got.f)"), "float");
    assert_eq!(eval::<String>(&script, "got.p"), "secret");
    let bad = vec![Parameter {
        name: "n".into(),
        ty: ParamType::Number,
        value: "many".into(),
    }];
    let e = Script::load(&path, &bad, &lab.env()).err().unwrap();
    // The content is not repeated: it could be a password typed as a number.
    assert_eq!(e, "lua: unable to read 'n' content as a number");
}

#[test]
fn an_init_error_is_reported_with_its_message() {
    let lab = Lab::new();
    let e = lab
        .try_load(
            "function init(conf)\n  error('no token')\nend\nfunction write(d) return true end",
            &[],
        )
        .err()
        .unwrap();
    assert!(e.starts_with("lua: error running function `init' "), "{e}");
    assert!(e.contains("script.lua:2: no token"), "{e}");
}

#[test]
fn package_path_includes_the_script_directory() {
    let lab = Lab::new();
    std::fs::write(lab.path("helper.lua"), "return { answer = 42 }").unwrap();
    let script = lab.load(
        &format!("local helper = require 'helper'\nanswer = helper.answer\n{MINIMAL}"),
        &[],
    );
    assert_eq!(eval::<i64>(&script, "answer"), 42);
    let dir = lab.dir.path().canonicalize().unwrap();
    let path: String = eval(&script, "package.path");
    assert!(
        path.ends_with(&format!(";{}/?.lua", lab.dir.path().display()))
            || path.ends_with(&format!(";{}/?.lua", dir.display())),
        "{path}"
    );
    let cpath: String = eval(&script, "package.cpath");
    assert!(cpath.ends_with("/lib/?.so"), "{cpath}");
}

#[test]
fn filter_is_test_called_with_1_2_before_init() {
    let lab = Lab::new();
    let script = lab.load(
        "calls = {}\n\
         function init(conf) calls[#calls + 1] = 'init' end\n\
         function filter(c, e) calls[#calls + 1] = c .. ',' .. e .. ',' .. type(broker); return true end\n\
         function write(d) return true end",
        &[],
    );
    assert_eq!(
        eval::<String>(&script, "table.concat(calls, ';')"),
        "1,2,nil;init"
    );
}

#[test]
fn a_broken_filter_is_disabled_and_write_gets_every_event() {
    for filter in [
        "function filter(c, e) return 'foo', 'bar' end",
        "function filter(c, e) error('bad') end",
        "function filter(c, e) return 1 end",
    ] {
        let lab = Lab::new();
        let mut script = lab.load(
            &format!("{filter}\nn = 0\nfunction init(conf) end\nfunction write(d) n = n + 1 return true end"),
            &[],
        );
        let logs = lab.logs();
        assert!(
            logs.iter().any(|l| l.contains("The filter() function")),
            "{filter}: {logs:?}"
        );
        let outcome = script.write(&ev(json!({"_type": 65550, "host_id": 1})));
        assert!(outcome.written && !outcome.filtered, "{filter}");
        assert_eq!(eval::<i64>(&script, "n"), 1);
    }
}

#[test]
fn filter_errors_on_real_events_skip_the_event_without_ack() {
    let lab = Lab::new();
    let mut script = lab.load(
        "function init(conf) end\n\
         function filter(c, e) if c == 1 and e == 2 then return true end if e == 14 then error('boom') end return e == 24 end\n\
         function write(d) return true end",
        &[],
    );
    let outcome = script.write(&ev(json!({"_type": 65550, "host_id": 1})));
    assert!(
        !outcome.written
            && outcome
                .error
                .unwrap()
                .contains("error while running function `filter()'")
    );
    let outcome = script.write(&ev(json!({"_type": 65551, "instance_id": 1})));
    assert!(outcome.filtered && !outcome.written);
    assert_eq!(script.pending(), 2);
    let outcome = script.write(&ev(json!({"_type": 65560, "host_id": 1, "service_id": 1})));
    assert_eq!(
        outcome.acked, 3,
        "a true acknowledges the errored and filtered events too"
    );
}

#[test]
fn broker_api_version_is_read_once_before_init() {
    let cases = [
        ("broker_api_version = 2", 2, false),
        ("broker_api_version = '2'", 2, false),
        ("broker_api_version = 2.7", 2, false),
        ("broker_api_version = 1", 1, false),
        ("", 1, false),
        ("broker_api_version = 3", 1, true),
        ("broker_api_version = 'two'", 1, true),
    ];
    for (line, api, logged) in cases {
        let lab = Lab::new();
        let script = lab.load(&format!("{line}\n{MINIMAL}"), &[]);
        assert_eq!(script.api_version(), api, "{line}");
        assert_eq!(
            lab.logs().iter().any(|l| l.contains("Setting it to 1")),
            logged,
            "{line}"
        );
    }
    // Set inside init, as sclib does: too late, API v1.
    let lab = Lab::new();
    let script = lab.load(
        "function init(conf) broker_api_version = 2 end\nfunction write(d) return true end",
        &[],
    );
    assert_eq!(script.api_version(), 1);
}

// ---- loading files as luaL_loadfile does (docs/lua-runtime.md §2.1 step 3)

/// A connector as Centreon's packages ship them: a `#!` first line, and an
/// error on line 3 so the line numbering can be checked.
const SHEBANG_BROKEN_AT_3: &str =
    "#!/usr/bin/lua\nfunction init(conf) end\nfunction write(d) return = true end\n";

#[test]
fn a_shebang_line_a_bom_or_both_are_skipped() {
    let lab = Lab::new();
    let bom = "\u{feff}";
    for (what, source) in [
        ("shebang", format!("#!/usr/bin/lua\n{MINIMAL}")),
        ("shebang and CRLF", format!("#!/usr/bin/lua\r\n{MINIMAL}")),
        ("BOM", format!("{bom}{MINIMAL}")),
        ("BOM and shebang", format!("{bom}#!/usr/bin/lua\n{MINIMAL}")),
    ] {
        if let Err(e) = lab.try_load(&source, &[]) {
            panic!("a script with a {what} does not load: {e}");
        }
    }
    // The skipped line is the first one only.
    let e = lab
        .try_load(&format!("{MINIMAL}#!/usr/bin/lua\n"), &[])
        .err()
        .unwrap();
    assert!(e.contains("script.lua:3:"), "{e}");
}

#[test]
fn an_error_on_line_3_of_a_shebang_script_is_reported_as_line_3() {
    let lab = Lab::new();
    let e = lab.try_load(SHEBANG_BROKEN_AT_3, &[]).err().unwrap();
    assert!(e.contains("could not be loaded"), "{e}");
    assert!(e.contains("script.lua:3:"), "{e}");
    let e = lab
        .try_load(&format!("\u{feff}{SHEBANG_BROKEN_AT_3}"), &[])
        .err()
        .unwrap();
    assert!(e.contains("script.lua:3:"), "{e}");
    // At run time too: the traceback's line is the file's.
    let script = lab.load(
        "#!/usr/bin/lua\nfunction init(conf) end\nfunction write(d) error('boom') end\n",
        &[],
    );
    let e = eval_err(&script, "write({})");
    assert!(e.contains("script.lua:3: boom"), "{e}");
}

/// Lua 5.4 bytecode of `source`, as `luac5.4` or `string.dump` makes it.
fn precompiled(source: &str) -> Vec<u8> {
    let lua = mlua::Lua::new();
    lua.load(source).into_function().unwrap().dump(false)
}

#[test]
fn a_precompiled_chunk_loads_with_or_without_a_shebang_line() {
    let lab = Lab::new();
    let chunk = precompiled(&format!("answer = 42\n{MINIMAL}"));
    for prefix in [&b""[..], b"#!/usr/bin/lua\n"] {
        let path = lab.path("compiled.lua");
        std::fs::write(&path, [prefix, &chunk].concat()).unwrap();
        let script = Script::load(&path, &[], &lab.env())
            .unwrap_or_else(|e| panic!("a precompiled script does not load: {e}"));
        assert_eq!(eval::<i64>(&script, "answer"), 42);
    }
}

/// Compiles `source` with Debian's `luac5.3` (package lua5.3, installed by
/// scripts/setup): the bytecode Centreon's Debian packages would run.
fn luac53(dir: &Path, source: &str) -> Vec<u8> {
    let src = dir.join("for-luac.lua");
    let out = dir.join("luac.out");
    std::fs::write(&src, source).unwrap();
    let status = std::process::Command::new("luac5.3")
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!("luac5.3 cannot run ({e}): run scripts/setup, which installs Debian's lua5.3")
        });
    assert!(status.success(), "luac5.3 failed");
    std::fs::read(&out).unwrap()
}

#[test]
fn bytecode_of_another_lua_version_is_refused_naming_both_versions() {
    let lab = Lab::new();
    let work = tempfile::tempdir().unwrap();
    let chunk = luac53(work.path(), MINIMAL);
    let path = lab.path("compiled53.lua");
    std::fs::write(&path, &chunk).unwrap();
    let e = Script::load(&path, &[], &lab.env()).err().unwrap();
    assert!(e.contains("could not be loaded"), "{e}");
    assert!(e.contains("precompiled for Lua 5.3"), "{e}");
    assert!(e.contains("runs Lua 5.4"), "{e}");
    // The same refusal for a module found by `require`.
    std::fs::write(lab.path("compiled_module.lua"), &chunk).unwrap();
    let e = lab
        .try_load(&format!("require 'compiled_module'\n{MINIMAL}"), &[])
        .err()
        .unwrap();
    assert!(e.contains("error loading module 'compiled_module'"), "{e}");
    assert!(e.contains("precompiled for Lua 5.3"), "{e}");
}

#[test]
fn a_library_tree_on_the_package_path_loads_with_shebang_modules() {
    let mut lab = Lab::new();
    let lib = tempfile::tempdir().unwrap();
    std::fs::create_dir(lib.path().join("mylib")).unwrap();
    std::fs::write(
        lib.path().join("mylib/sc_x.lua"),
        "#!/usr/bin/lua\nlocal sc_y = require('mylib.sc_y')\nreturn { answer = sc_y.base + 1 }\n",
    )
    .unwrap();
    std::fs::write(
        lib.path().join("mylib/sc_y.lua"),
        "\u{feff}#!/usr/bin/lua\nreturn { base = 41 }\n",
    )
    .unwrap();
    std::fs::write(
        lib.path().join("mylib/broken.lua"),
        "#!/usr/bin/lua\nlocal x = 1\nreturn = x\n",
    )
    .unwrap();
    lab.settings.package_path = format!("{}/?.lua", lib.path().display());
    let script = lab.load(
        &format!(
            "#!/usr/bin/lua\nlocal sc_x = require('mylib.sc_x')\nanswer = sc_x.answer\n{MINIMAL}"
        ),
        &[],
    );
    assert_eq!(eval::<i64>(&script, "answer"), 42);
    // The error of a broken module names its file and line.
    let e = eval_err(&script, "require('mylib.broken')");
    assert!(e.contains("error loading module 'mylib.broken'"), "{e}");
    assert!(e.contains("broken.lua:3:"), "{e}");
    // A module that does not exist lists where it was looked for.
    let e = eval_err(&script, "require('mylib.absent')");
    assert!(e.contains("module 'mylib.absent' not found"), "{e}");
    assert!(
        e.contains("\n\tno file '") && e.contains("mylib/absent.lua"),
        "{e}"
    );
    assert!(!e.contains("\n\t\n\t"), "a blank line in: {e}");
}

#[test]
fn dofile_and_loadfile_follow_the_same_rules() {
    let lab = Lab::new();
    std::fs::write(lab.path("part.lua"), "#!/usr/bin/lua\nreturn 7, 8\n").unwrap();
    std::fs::write(lab.path("broken.lua"), "#!/usr/bin/lua\n\nreturn = 1\n").unwrap();
    std::fs::write(lab.path("env.lua"), "#!/usr/bin/lua\nreturn value\n").unwrap();
    std::fs::write(lab.path("compiled.lua"), precompiled("return 'compiled'")).unwrap();
    let script = lab.load(MINIMAL, &[]);
    let dir = lab.dir.path().display().to_string();
    script.lua().globals().set("dir", dir).unwrap();
    assert_eq!(
        eval::<i64>(&script, "select(2, dofile(dir .. '/part.lua'))"),
        8
    );
    assert_eq!(eval::<i64>(&script, "loadfile(dir .. '/part.lua')()"), 7);
    assert_eq!(
        eval::<String>(&script, "loadfile(dir .. '/compiled.lua')()"),
        "compiled"
    );
    // loadfile answers nil and the message; dofile raises it.
    let e: String = eval(&script, "select(2, loadfile(dir .. '/broken.lua'))");
    assert!(e.contains("broken.lua:3:"), "{e}");
    let e = eval_err(&script, "dofile(dir .. '/broken.lua')");
    assert!(e.contains("broken.lua:3:"), "{e}");
    let e: String = eval(&script, "select(2, loadfile(dir .. '/absent.lua'))");
    assert!(e.contains("cannot open") && e.contains("absent.lua"), "{e}");
    // The mode and environment arguments are Lua's.
    let e: String = eval(&script, "select(2, loadfile(dir .. '/compiled.lua', 't'))");
    assert!(e.contains("attempt to load a binary chunk"), "{e}");
    assert_eq!(
        eval::<String>(
            &script,
            "loadfile(dir .. '/env.lua', 't', { value = 'own' })()"
        ),
        "own"
    );
    let e = eval_err(&script, "dofile()");
    assert!(e.contains("needs a file name"), "{e}");
}

// ---- acknowledgement (docs/lua-runtime.md §2.3, §2.4)

#[test]
fn write_true_acknowledges_everything_handed_so_far() {
    let lab = Lab::new();
    let mut script = lab.load(
        "function init(conf) end\nn = 0\nfunction write(d) n = n + 1 if n % 3 == 0 then return true end if n == 4 then return 1 end return false end",
        &[],
    );
    let e = ev(json!({"_type": 65550, "host_id": 1}));
    assert_eq!(script.write(&e).acked, 0);
    assert_eq!(script.write(&e).acked, 0);
    assert_eq!(script.write(&e).acked, 3);
    let not_boolean = script.write(&e);
    assert_eq!(not_boolean.acked, 0, "1 is not an acknowledgement");
    assert!(not_boolean
        .error
        .unwrap()
        .contains("`write' must return a boolean"));
    assert_eq!(script.write(&e).acked, 0);
    assert_eq!(script.write(&e).acked, 3);
}

#[test]
fn a_write_error_is_logged_and_acked_by_the_next_true() {
    let lab = Lab::new();
    let mut script = lab.load(
        "function init(conf) end\nfunction write(d) if d.host_id == 1 then error('nope') end return true end",
        &[],
    );
    let outcome = script.write(&ev(json!({"_type": 65550, "host_id": 1})));
    assert!(outcome
        .error
        .as_deref()
        .unwrap()
        .starts_with("lua: error running function `write' "));
    assert!(outcome.error.unwrap().contains("nope"));
    assert_eq!(
        script
            .write(&ev(json!({"_type": 65550, "host_id": 2})))
            .acked,
        2
    );
}

#[test]
fn flush_true_acknowledges_and_false_or_errors_do_not() {
    let lab = Lab::new();
    let mut script = lab.load(
        "function init(conf) end\nmode = false\nfunction write(d) return false end\nfunction flush() if mode == 'err' then error('down') end return mode end",
        &[],
    );
    let e = ev(json!({"_type": 65550, "host_id": 1}));
    script.write(&e);
    script.write(&e);
    let f = script.flush();
    assert!(f.called && f.acked == 0 && f.error.is_none());
    script.lua().globals().set("mode", "err").unwrap();
    let f = script.flush();
    assert!(f
        .error
        .unwrap()
        .starts_with("lua: error running function `flush' "));
    script.lua().globals().set("mode", 1).unwrap();
    assert!(script
        .flush()
        .error
        .unwrap()
        .contains("`flush' must return a boolean"));
    script.lua().globals().set("mode", true).unwrap();
    assert_eq!(script.flush().acked, 2);
    assert_eq!(script.flush().acked, 0);
    let lab = Lab::new();
    let mut script = lab.load(MINIMAL, &[]);
    assert!(!script.flush().called, "no flush() function");
}

// ---- broker_log (docs/lua-runtime.md §3)

#[test]
fn broker_log_file_lines_have_centreon_s_format() {
    let lab = Lab::new();
    let log = lab.path("script.log");
    let script = lab.load(MINIMAL, &[]);
    let lua = script.lua();
    lua.globals().set("log", log.to_str().unwrap()).unwrap();
    lua.load(
        "broker_log:set_parameters(2, log)\n\
         broker_log:info(1, 'service_id => 21')\n\
         broker_log:warning(2, 'careful')\n\
         broker_log:error(3, 'too detailed')\n\
         broker_log:error(0, 12)\n\
         broker_log:info(1, {})",
    )
    .exec()
    .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    let rest: Vec<&str> = lines.iter().map(|l| &l[26..]).collect();
    assert_eq!(
        rest,
        [
            "INFO: service_id => 21",
            "WARNING: careful",
            "ERROR: 12",
            "INFO: (null)"
        ]
    );
    for line in &lines {
        // `%c: ` in the C locale: "Fri Jan 26 08:31:49 2018: "
        let prefix = &line[..26];
        assert_eq!(&prefix[24..], ": ");
        assert_eq!(prefix.as_bytes()[3], b' ');
        assert_eq!(prefix.as_bytes()[7], b' ');
        assert_eq!(prefix.as_bytes()[13], b':');
    }
}

#[test]
fn passwords_are_redacted_from_the_script_s_own_log_file() {
    let lab = Lab::new();
    let log = lab.path("secret.log");
    let path = lab.path("script.lua");
    std::fs::write(
        &path,
        "function init(conf)\n\
           broker_log:set_parameters(3, conf.logfile)\n\
           broker_log:info(1, 'curl -H \"Authorization: Token ' .. conf.token .. '\" ' .. conf.url)\n\
         end\n\
         function write(d) return true end",
    )
    .unwrap();
    let mut params = string_params(&[
        ("logfile", log.to_str().unwrap()),
        ("url", "http://127.0.0.1:9/?p=s%2Fcret%2B1"),
    ]);
    params.push(Parameter {
        name: "token".into(),
        ty: ParamType::Password,
        value: "s/cret+1".into(),
    });
    Script::load(&path, &params, &lab.env()).unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.ends_with(
            "INFO: curl -H \"Authorization: Token [redacted]\" http://127.0.0.1:9/?p=[redacted]\n"
        ),
        "{text}"
    );
}

#[test]
fn broker_log_defaults_to_level_0_and_the_service_log() {
    let lab = Lab::new();
    let script = lab.load(MINIMAL, &[]);
    script
        .lua()
        .load("broker_log:info(0, 'zero') broker_log:info(1, 'one') broker_log:warning(0, 2.5)")
        .exec()
        .unwrap();
    assert_eq!(lab.logs(), ["INFO: zero", "WARNING: 2.5"]);
    // One argument: level 0 and no text, undefined in Centreon's logger
    // mode; a Lua error here.
    let e = eval_err(&script, "broker_log:info('coucou')");
    assert!(e.contains("must be a string or a number"), "{e}");
    let e = eval_err(&script, "broker_log:set_parameters(4, '')");
    assert!(
        e.contains("set_parameters expects the first argument to be 0, 1, 2 or 3."),
        "{e}"
    );
    let e = eval_err(&script, "broker_log:set_parameters(1)");
    assert!(e.contains("second argument to be a file path"), "{e}");
    let e = eval_err(&script, "broker_log:info(0, nil)");
    assert!(e.contains("must be a string or a number"), "{e}");
}

#[test]
fn broker_log_files_rotate_under_concurrent_writers_without_losing_a_line() {
    const WRITERS: usize = 4;
    const LINES: usize = 1500;
    let mut lab = Lab::new();
    // Small files and room for all of them, so every line can be counted.
    lab.settings.log_rotation = Rotation {
        max_bytes: 4096,
        keep: 1000,
    };
    let log = lab.path("shared.log");
    let lab = Arc::new(lab);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let lab = Arc::clone(&lab);
            let log = log.clone();
            std::thread::spawn(move || {
                // One Lua state per writer, as one per output.
                let path = lab.path(&format!("writer{w}.lua"));
                std::fs::write(&path, MINIMAL).unwrap();
                let script = Script::load(&path, &[], &lab.env()).unwrap();
                let lua = script.lua();
                lua.globals().set("log", log.to_str().unwrap()).unwrap();
                lua.globals().set("writer", w).unwrap();
                lua.load(format!(
                    "broker_log:set_parameters(3, log)\n\
                     for i = 1, {LINES} do broker_log:info(1, 'writer ' .. writer .. ' line ' .. i .. ' end') end"
                ))
                .exec()
                .unwrap();
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(lab.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("shared.log") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096, "{name} is {} bytes", text.len());
        assert!(text.ends_with('\n'), "{name} ends inside a line");
        for line in text.lines() {
            let rest = line
                .get(26..)
                .unwrap_or_else(|| panic!("a torn line: {line:?}"));
            assert!(
                rest.starts_with("INFO: writer ") && rest.ends_with(" end"),
                "{line:?}"
            );
            assert!(seen.insert(rest.to_owned()), "{rest} twice");
        }
    }
    assert_eq!(seen.len(), WRITERS * LINES, "lines lost over {files} files");
    assert!(
        files > 10,
        "only {files} files: the rotation was not exercised"
    );
}

// ---- runaway scripts: CPU budget, memory limit, stop

#[test]
fn a_call_over_its_cpu_budget_is_interrupted_and_the_script_goes_on() {
    let mut lab = Lab::new();
    lab.settings.call_cpu_budget = Duration::from_millis(300);
    let mut script = lab.load(
        "calls = 0\n\
         function init(conf) end\n\
         function write(e)\n\
           calls = calls + 1\n\
           if calls == 1 then while true do end end\n\
           return true\n\
         end\n",
        &[],
    );
    let looping = script.write(&ev(json!({"_type": 65548, "host_id": 1, "name": "a"})));
    let error = looping.error.expect("the loop was not interrupted");
    assert!(
        error.contains("lua: error running function `write'"),
        "{error}"
    );
    assert!(
        error.contains("used more than 0.3 s of CPU (lua.call_cpu_budget_secs)"),
        "{error}"
    );
    assert_eq!(looping.acked, 0);
    // The state is intact: the next call acknowledges both events.
    let next = script.write(&ev(json!({"_type": 65548, "host_id": 2, "name": "b"})));
    assert_eq!((next.error, next.acked), (None, 2));
    // A loop that catches the interruption with pcall is caught again.
    let mut script = lab.load(
        "function init(conf) end\n\
         function write(e)\n\
           while true do pcall(function() while true do end end) end\n\
         end\n",
        &[],
    );
    let caught = script.write(&ev(json!({"_type": 65548, "host_id": 1, "name": "a"})));
    assert!(caught
        .error
        .unwrap()
        .contains("used more than 0.3 s of CPU"));
}

#[test]
fn waiting_is_not_cpu_and_is_never_interrupted() {
    let mut lab = Lab::new();
    lab.settings.call_cpu_budget = Duration::from_millis(100);
    // os.execute("sleep") waits in the kernel for 0.6 s: six budgets of
    // wall time, almost no CPU.
    let mut script = lab.load(
        "function init(conf) end\n\
         function write(e) os.execute('sleep 0.6') return true end\n",
        &[],
    );
    let outcome = script.write(&ev(json!({"_type": 65548, "host_id": 1, "name": "a"})));
    assert_eq!((outcome.error, outcome.acked), (None, 1));
}

#[test]
fn a_script_past_its_memory_limit_gets_a_clear_error() {
    let mut lab = Lab::new();
    lab.settings.memory_limit_bytes = 64 * 1024 * 1024;
    let mut script = lab.load(
        "function init(conf) end\n\
         function write(e)\n\
           local t = {}\n\
           for i = 1, 1e9 do t[i] = string.rep('x', 64) .. i end\n\
           return true\n\
         end\n",
        &[],
    );
    let outcome = script.write(&ev(json!({"_type": 65548, "host_id": 1, "name": "a"})));
    let error = outcome.error.expect("no memory error");
    assert!(error.contains("not enough memory"), "{error}");
    assert!(
        error.contains("holds more than its memory limit of 64 MiB (lua.memory_limit_bytes)"),
        "{error}"
    );
    // What it held is collectable, and the state goes on.
    let next = script.write(&ev(json!({"_type": 65548, "host_id": 2, "name": "b"})));
    assert!(next.error.is_some_and(|e| e.contains("memory limit")));
    // A state that grows between calls (a queue that is never sent) is
    // found past its limit after the call, for the worker to close it.
    let mut script = lab.load(
        "held = {}\n\
         function init(conf) end\n\
         function write(e) held[#held + 1] = string.rep('x', 8 * 1024 * 1024) return false end\n",
        &[],
    );
    let mut calls = 0;
    while script.over_memory_limit().is_none() {
        calls += 1;
        assert!(calls <= 9, "64 MiB held and not seen");
        script.write(&ev(json!({"_type": 65548, "host_id": 1, "name": "a"})));
    }
    assert!(
        calls >= 7,
        "seen past the limit after {calls} calls of 8 MiB"
    );
    let e = lab
        .try_load(
            "local t = {} for i = 1, 1e9 do t[i] = string.rep('y', 64) .. i end\n",
            &[],
        )
        .err()
        .unwrap();
    assert!(
        e.contains("could not be compiled") && e.contains("memory limit of 64 MiB"),
        "{e}"
    );
}

/// The names of this process's threads (`/proc/self/task/*/comm`).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

async fn wait_for_threads(what: &str, done: impl Fn(&[String]) -> bool) {
    for _ in 0..200 {
        if done(&thread_names()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}; threads: {:?}",
        thread_names()
    );
}

#[tokio::test]
async fn a_looping_script_is_stopped_when_its_output_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("spin_write.lua"),
        "function init(conf) end\nfunction write(e) broker_log:info(0, 'looping') while true do end end\n",
    )
    .unwrap();
    std::fs::write(
        scripts.join("spin_init.lua"),
        "function init(conf) while true do pcall(function() while true do end end) end end\n\
         function write(e) return true end\n",
    )
    .unwrap();
    create_lua(&server, "spin-write", "spin_write.lua", json!([])).await;
    create_lua(&server, "spin-init", "spin_init.lua", json!([])).await;
    server.post_events(&[host(1, "srv-01")]).await;
    // The counters are written once a batch is handed: the log says when
    // write() is entered.
    for _ in 0..200 {
        if script_log(&server, "spin-write").await == ["INFO: looping"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(script_log(&server, "spin-write").await, ["INFO: looping"]);
    let threads = thread_names();
    for name in ["lua:spin-write", "lua:spin-init"] {
        assert!(threads.iter().any(|t| t == name), "{threads:?}");
    }
    // A worker that takes a while to stop holds up no reader: its status
    // and the list answer while the restart waits for the script (a
    // second's grace, then the interruption).
    let empty = json!({});
    let restart = server.send_json(Method::POST, "/api/v1/outputs/spin-write/restart", &empty);
    let mut restart = Box::pin(restart);
    let readers = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = server.get_json("/api/v1/outputs/spin-write/status").await;
        let list = server.get("/api/v1/outputs").await.status();
        (status, list)
    };
    tokio::select! {
        biased;
        _ = &mut restart => panic!("the restart answered first: the readers waited for it"),
        (status, list) = readers => {
            assert_eq!(status["name"], "spin-write", "{status}");
            assert_eq!(list, 200);
        }
    }
    assert_eq!(restart.await.status(), 200);
    drop(empty);
    for name in ["spin-write", "spin-init"] {
        let response = server
            .send_json(
                Method::DELETE,
                &format!("/api/v1/outputs/{name}"),
                &json!({}),
            )
            .await;
        assert_eq!(response.status(), 204, "{name}");
    }
    // Their threads end (and with them the Lua states): nothing spins on.
    wait_for_threads("the scripts' threads to end", |threads| {
        !threads.iter().any(|t| t.starts_with("lua:spin-"))
    })
    .await;
    server.stop().await;
}

#[test]
fn the_sandbox_takes_away_programs_native_code_and_bytecode() {
    let mut lab = Lab::new();
    lab.settings.sandbox = true;
    std::fs::write(lab.path("compiled.lua"), precompiled("return 1")).unwrap();
    let script = lab.load(MINIMAL, &[]);
    let dir = lab.dir.path().display().to_string();
    script.lua().globals().set("dir", dir).unwrap();
    for (expression, refused) in [
        (
            "os.execute('touch /tmp/sandbox-escape')",
            "os.execute is not available",
        ),
        ("io.popen('id')", "io.popen is not available"),
        (
            "package.loadlib('libc.so.6', 'system')",
            "package.loadlib is not available",
        ),
        ("require('cjson')", "module 'cjson' not found"),
        (
            "load(string.dump(function() end))",
            "attempt to load a binary chunk",
        ),
    ] {
        let e = match script
            .lua()
            .load(format!("return {expression}"))
            .eval::<mlua::MultiValue>()
        {
            Err(e) => e.to_string(),
            // load() answers nil and the message.
            Ok(values) => format!("{values:?}"),
        };
        assert!(e.contains(refused), "{expression}: {e}");
    }
    assert!(!Path::new("/tmp/sandbox-escape").exists());
    assert_eq!(eval::<String>(&script, "type(debug)"), "nil");
    let e: String = eval(&script, "select(2, loadfile(dir .. '/compiled.lua', 'b'))");
    assert!(e.contains("attempt to load a binary chunk"), "{e}");
    // What Centreon's library needs still works: its sleep, files, text chunks.
    assert!(eval::<bool>(&script, "os.execute('sleep 0.01')"));
    assert_eq!(eval::<i64>(&script, "load('return 7')()"), 7);
    assert_eq!(
        eval::<i64>(&script, "load('return x', 'c', 'b', { x = 8 })()"),
        8
    );
    let written: String = eval(
        &script,
        "(function() local f = io.open(dir .. '/cache.txt', 'w') f:write('kept') f:close() \
         return io.open(dir .. '/cache.txt'):read('a') end)()",
    );
    assert_eq!(written, "kept");
    // A precompiled main script is refused too.
    let e = Script::load(&lab.path("compiled.lua"), &[], &lab.env())
        .err()
        .unwrap();
    assert!(e.contains("attempt to load a binary chunk"), "{e}");
}

/// In the sandbox the service's own files are out of reach: the key that
/// unseals every stored password, the database, the journal, however the
/// path is written; the scripts' directory and the rest of the system are
/// not.
#[test]
fn the_sandbox_keeps_scripts_away_from_the_services_own_files() {
    let mut lab = Lab::new();
    let scripts = lab.path("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::create_dir_all(lab.path("journal")).unwrap();
    std::fs::write(lab.path("secret.key"), "00".repeat(32)).unwrap();
    std::fs::write(lab.path("journal/00000001.seg"), "x").unwrap();
    std::fs::write(scripts.join("main.lua"), MINIMAL).unwrap();
    lab.settings.script_dirs = vec![scripts.clone()];
    lab.settings.sandbox = true;
    let outside = tempfile::tempdir().unwrap();
    let script = Script::load(&scripts.join("main.lua"), &[], &lab.env()).unwrap();
    let globals = script.lua().globals();
    globals
        .set("data", lab.dir.path().display().to_string())
        .unwrap();
    globals
        .set("outside", outside.path().display().to_string())
        .unwrap();
    for expression in [
        "io.open(data .. '/secret.key')",
        "io.open(data .. '/scripts/../secret.key')",
        "io.open(data .. '/brokerstream.db', 'w')",
        "io.lines(data .. '/secret.key')",
        "io.input(data .. '/secret.key')",
        "os.remove(data .. '/journal/00000001.seg')",
        "os.rename(outside .. '/x', data .. '/secret.key')",
        "loadfile(data .. '/secret.key')",
        "dofile(data .. '/secret.key')",
    ] {
        let e = script
            .lua()
            .load(format!("return {expression}"))
            .eval::<mlua::MultiValue>()
            .map(|v| format!("{v:?}"))
            .unwrap_or_else(|e| e.to_string());
        assert!(
            e.contains("one of brokerstream's own files"),
            "{expression}: {e}"
        );
        assert!(
            !e.contains(&"00".repeat(8)),
            "{expression} leaked the key: {e}"
        );
    }
    assert!(lab.path("journal/00000001.seg").exists());
    // The script directory, and files elsewhere, as before.
    let written: String = eval(
        &script,
        "(function() local f = io.open(data .. '/scripts/cache.txt', 'w') f:write('kept') f:close() \
         local g = io.open(outside .. '/log.txt', 'w') g:write('log') g:close() \
         return io.open(data .. '/scripts/cache.txt'):read('a') .. io.open(outside .. '/log.txt'):read('a') end)()",
    );
    assert_eq!(written, "keptlog");
    // Without the sandbox a script has the service's rights, as in Centreon.
    lab.settings.sandbox = false;
    let open = Script::load(&scripts.join("main.lua"), &[], &lab.env()).unwrap();
    open.lua()
        .globals()
        .set("data", lab.dir.path().display().to_string())
        .unwrap();
    assert_eq!(
        eval::<String>(&open, "io.open(data .. '/secret.key'):read(4)"),
        "0000"
    );
}

// ---- broker (docs/lua-runtime.md §5)

#[test]
fn json_encode_of_tables() {
    let lab = Lab::new();
    let script = lab.load(MINIMAL, &[]);
    let enc = |e: &str| eval::<String>(&script, &format!("broker.json_encode({e})"));
    assert_eq!(enc("{1, 2.5, 1.0, 'x'}"), r#"[1,2.5,1.0,"x"]"#);
    assert_eq!(
        enc("{0/0, 1/0, -1/0, 1e100, 27.1, 3}"),
        "[-nan,inf,-inf,1e+100,27.1,3]"
    );
    assert_eq!(enc("{1, 2, x = 3}"), "[1,2]");
    assert_eq!(enc("{}"), "[]");
    assert_eq!(enc("{a = {b = true}}"), r#"{"a":{"b":true}}"#);
    assert_eq!(enc("'a\\\\b\"c\\td\\re\\nf'"), r#""a\\b\"c\td\re\nf""#);
    assert_eq!(enc("'cut\\0here'"), r#""cut""#);
    assert_eq!(enc("12"), "12");
    assert_eq!(enc("false"), "false");
    assert_eq!(
        enc("'ignored', 'last'"),
        r#""last""#,
        "the last argument is encoded"
    );
    let two = eval::<String>(&script, "broker.json_encode({x = 1, y = 'a'})");
    assert!(
        two == r#"{"x":1,"y":"a"}"# || two == r#"{"y":"a","x":1}"#,
        "{two}"
    );
    assert!(eval_err(&script, "broker.json_encode({[2] = 'a'})").contains("invalid key to 'next'"));
    assert!(
        eval_err(&script, "broker.json_encode(nil)").contains("json_encode: type not implemented")
    );
    assert!(eval_err(&script, "broker.json_encode(print)").contains("type not implemented"));
}

#[test]
fn json_encode_of_a_nested_event_is_an_error() {
    let lab = Lab::new();
    let mut script = lab.load(
        "broker_api_version = 2\nfunction init(conf) end\nfunction write(d) ok, err = pcall(broker.json_encode, {d}) return true end",
        &[],
    );
    script.write(&ev(json!({"_type": 65550, "host_id": 1})));
    assert!(!eval::<bool>(&script, "ok"));
    assert!(eval::<String>(&script, "tostring(err)").contains("broker_event expected, got table"));
}

#[test]
fn json_decode_with_centreon_s_conversions() {
    let lab = Lab::new();
    let script = lab.load(MINIMAL, &[]);
    let lua = script.lua();
    let check = |expr: &str, expected: &str| {
        let got: String = lua.load(format!("return tostring({expr})")).eval().unwrap();
        assert_eq!(got, expected, "{expr}");
    };
    check(r#"broker.json_decode('{"a":4294967296}').a"#, "0");
    check(r#"broker.json_decode('{"a":4294967297}').a"#, "1");
    check(r#"broker.json_decode('{"a":-2147483649}').a"#, "2147483647");
    check(r#"math.type(broker.json_decode('12'))"#, "integer");
    check(r#"broker.json_decode('12.0')"#, "12.0");
    check(r#"broker.json_decode('1e3')"#, "1000.0");
    check(r#"broker.json_decode('[1,null,3]')[2]"#, "nil");
    check(r#"broker.json_decode('[1,null,3]')[3]"#, "3");
    check(r#"next(broker.json_decode('{"k":null}'))"#, "nil");
    check(r#"broker.json_decode('"a\\\\nb"')"#, "a\nb");
    check(r#"broker.json_decode('{"t":true}').t"#, "true");
    let (value, error): (mlua::Value, String) =
        lua.load("return broker.json_decode('')").eval().unwrap();
    assert!(value.is_nil());
    assert!(
        error.starts_with("[json.exception.parse_error.101] parse error at line 1, column 1:"),
        "{error}"
    );
    let (_, error): (mlua::Value, String) = lua
        .load("return broker.json_decode('{\"a\": }')")
        .eval()
        .unwrap();
    assert!(
        error.starts_with("[json.exception.parse_error.101] parse error at line 1"),
        "{error}"
    );
}

/// By default the numbers a plugin wrote (Centreon 21.10); with
/// `lua.perfdata_values = "float32"`, current Centreon's 32-bit floats.
#[test]
fn parse_perfdata_reads_exact_decimals_or_centreons_32_bit_floats() {
    let mut lab = Lab::new();
    let script = lab.load(MINIMAL, &[]);
    let rta = "tostring(broker.parse_perfdata(' pl=0.03 rta=0.80;0.1', true).rta.warning_high)";
    assert_eq!(eval::<String>(&script, rta), "0.1");
    assert_eq!(
        eval::<String>(&script, "tostring(broker.parse_perfdata(' pl=0.03').pl)"),
        "0.03"
    );
    lab.settings.perfdata_values = brokerstream::output::perfdata::Precision::Float32;
    let script = lab.load(MINIMAL, &[]);
    assert_eq!(eval::<String>(&script, rta), "0.10000000149012");
    assert_eq!(
        eval::<String>(&script, "tostring(broker.parse_perfdata(' pl=0.03').pl)"),
        "0.029999999329448"
    );
}

#[test]
fn parse_perfdata_both_modes() {
    let mut lab = Lab::new();
    lab.settings.perfdata_values = brokerstream::output::perfdata::Precision::Float32;
    let script = lab.load(MINIMAL, &[]);
    let enc = |e: &str| eval::<String>(&script, e);
    assert_eq!(
        enc("tostring(broker.parse_perfdata(' percent_packet_loss=0 rta=0.80').rta)"),
        "0.80000001192093"
    );
    assert_eq!(
        enc("tostring(broker.parse_perfdata(' percent_packet_loss=0 rta=0.80').percent_packet_loss)"),
        "0.0"
    );
    assert_eq!(enc("broker.json_encode(broker.parse_perfdata(''))"), "[]");
    assert_eq!(
        enc("broker.json_encode(broker.parse_perfdata('noeq 5'))"),
        "[]"
    );
    let full =
        "broker.parse_perfdata(\"'one value'=12%;25:80;81:95 'another value'=78%;60;90;;\", true)";
    assert_eq!(enc(&format!("tostring({full}['one value'].value)")), "12.0");
    assert_eq!(enc(&format!("{full}['one value'].uom")), "%");
    assert_eq!(enc(&format!("tostring({full}['one value'].min)")), "nan");
    assert_eq!(
        enc(&format!("tostring({full}['another value'].warning_high)")),
        "60.0"
    );
    assert_eq!(
        enc(&format!("tostring({full}['one value'].warning_mode)")),
        "false"
    );
    assert_eq!(
        enc(&format!("{full}['one value'].metric_name")),
        "one value"
    );
    let sd = "broker.parse_perfdata('PingSDWan~vdom~ifName#azure.insights.logicaldisk.free.percentage=94.82%;;;0;100', true)['PingSDWan~vdom~ifName#azure.insights.logicaldisk.free.percentage']";
    assert_eq!(enc(&format!("{sd}.instance")), "PingSDWan");
    assert_eq!(
        enc(&format!("table.concat({sd}.subinstance, ',')")),
        "vdom,ifName"
    );
    assert_eq!(enc(&format!("{sd}.metric_unit")), "percentage");
    assert_eq!(enc(&format!("tostring({sd}.value)")), "94.819999694824");
    assert_eq!(enc(&format!("tostring({sd}.max)")), "100.0");
}

#[test]
fn the_other_broker_functions() {
    let lab = Lab::new();
    let script = lab.load(MINIMAL, &[]);
    let s = |e: &str| eval::<String>(&script, e);
    assert_eq!(
        s("broker.url_encode('La leçon du château de l\\'araignée')"),
        "La%20le%C3%A7on%20du%20ch%C3%A2teau%20de%20l%27araign%C3%A9e"
    );
    assert_eq!(
        s("broker.url_encode('A.a-b_B:c/C?d=D&e~')"),
        "A.a-b_B%3Ac%2FC%3Fd%3DD%26e~"
    );
    assert_eq!(
        s("broker.md5('Hello World!')"),
        "ed076287532e86365e841e92bfc50d8c"
    );
    assert_eq!(s("broker.md5('')"), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        s("broker.base64_encode('Hello World from Broker!')"),
        "SGVsbG8gV29ybGQgZnJvbSBCcm9rZXIh"
    );
    assert_eq!(
        s("broker.base64_decode('SGVsbG8g V29y\\nbGQ=')"),
        "Hello World"
    );
    assert!(eval_err(&script, "broker.base64_decode('a*b')").contains("not legal in a base64"));
    assert_eq!(s("broker.bbdo_version()"), "2.0.0");
    let file = lab.path("script.lua");
    script
        .lua()
        .globals()
        .set("f", file.to_str().unwrap())
        .unwrap();
    assert_eq!(
        s("tostring(broker.stat(f).size)"),
        MINIMAL.len().to_string()
    );
    let mut keys: Vec<String> = script
        .lua()
        .load("local t = {} for k in pairs(broker.stat(f)) do t[#t+1] = k end return t")
        .eval()
        .unwrap();
    keys.sort();
    assert_eq!(keys, ["atime", "ctime", "gid", "mtime", "size", "uid"]);
    assert_eq!(
        s("select(2, broker.stat('/no/such/file'))"),
        "No such file or directory"
    );
}

// ---- events: API v1 tables and v2 userdata (docs/lua-runtime.md §6)

#[test]
fn v1_events_are_plain_mutable_tables_without_nil_fields() {
    let lab = Lab::new();
    let mut script = lab.load(
        "function init(conf) end\nfunction write(d) last = d d.extra = 1 return true end",
        &[],
    );
    script.write(&ev(json!({"_type": 65550, "host_id": 1, "state": 2, "last_check": 0, "latency": 0.5, "output": "x"})));
    assert_eq!(eval::<String>(&script, "type(last)"), "table");
    assert_eq!(eval::<i64>(&script, "last._type"), 65550);
    assert_eq!(eval::<i64>(&script, "last.category"), 1);
    assert_eq!(eval::<i64>(&script, "last.element"), 14);
    assert_eq!(eval::<String>(&script, "math.type(last.state)"), "integer");
    assert_eq!(eval::<String>(&script, "tostring(last.latency)"), "0.5");
    assert!(
        eval::<bool>(&script, "last.last_check == nil"),
        "a 0 time is nil"
    );
    assert!(
        eval::<bool>(&script, "last.type == nil"),
        "no `type` key is added"
    );
    assert_eq!(eval::<i64>(&script, "last.extra"), 1);
}

#[test]
fn v2_events_are_read_only_userdata() {
    let lab = Lab::new();
    let mut script = lab.load(
        "broker_api_version = 2\nfunction init(conf) end\n\
         function write(d)\n\
           last = d\n\
           keys, nils = 0, 0\n\
           for k, v in pairs(d) do keys = keys + 1 if v == nil then nils = nils + 1 end end\n\
           ok, err = pcall(function() d.state = 3 end)\n\
           return true\n\
         end",
        &[],
    );
    let mut service = serde_json::from_str::<Value>(
        std::fs::read_to_string(data("cbd-21.10/events-api-v1.jsonl"))
            .unwrap()
            .lines()
            .nth(11)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(service["_type"], 65559);
    service["last_check"] = json!(0);
    script.write(&ev(service));
    assert_eq!(eval::<String>(&script, "type(last)"), "userdata");
    assert_eq!(eval::<i64>(&script, "last._type"), 65559);
    assert!(eval::<bool>(&script, "last.no_such_field == nil"));
    assert!(eval::<bool>(&script, "last.last_check == nil"));
    assert_eq!(
        eval::<i64>(&script, "keys"),
        80 + 3,
        "every named service field, nil ones too"
    );
    assert!(eval::<i64>(&script, "nils") >= 1);
    assert!(!eval::<bool>(&script, "ok"), "events are read-only");
}

/// docs/lua-runtime.md §2.1 step 9 and §6.2: `broker_event` is the metatable
/// of the API v2 events, published as a global; scripts see it with
/// `getmetatable`.
#[test]
fn broker_event_is_the_metatable_of_api_v2_events() {
    let lab = Lab::new();
    fill_cache(&lab.cache);
    let mut script = lab.load(
        "broker_api_version = 2\n\
         in_main_chunk = broker_event\n\
         function init(conf) end\n\
         function write(d)\n\
           same = getmetatable(d) == broker_event\n\
           return true\n\
         end",
        &[],
    );
    assert!(eval::<bool>(&script, "in_main_chunk == nil"));
    assert_eq!(eval::<String>(&script, "type(broker_event)"), "table");
    assert!(eval::<bool>(
        &script,
        "type(broker_event.__index) == 'function' and type(broker_event.__pairs) == 'function'"
    ));
    script.write(&ev(service_status(1, 2, 0)));
    assert!(eval::<bool>(&script, "same"));
    assert!(eval::<bool>(
        &script,
        "getmetatable(broker_cache:get_host(1)) == broker_event"
    ));
    // A field added to the metatable is seen by every event, as with
    // Centreon's luaL_newmetatable table.
    assert!(eval::<bool>(
        &script,
        "(function() broker_event.__tostring = function() return 'ev' end \
          return tostring(broker_cache:get_host(1)) == 'ev' end)()"
    ));
    // API v1 events are plain tables without a metatable.
    let mut v1 = lab.load(
        "function init(conf) end\nfunction write(d) mt = getmetatable(d) return true end",
        &[],
    );
    v1.write(&ev(service_status(1, 2, 0)));
    assert!(eval::<bool>(&v1, "mt == nil"));
}

#[test]
fn v2_pairs_stops_at_the_first_unset_optional() {
    let lab = Lab::new();
    let mut script = lab.load(
        "broker_api_version = 2\nfunction init(conf) end\n\
         function write(d) seen = {} for k, v in pairs(d) do seen[#seen+1] = k end return true end",
        &[],
    );
    script.write(&ev(
        json!({"_type": 65592, "host_id": 1, "notification_number": 9}),
    ));
    assert_eq!(
        eval::<String>(&script, "table.concat(seen, ',')"),
        "_type,category,element,host_id"
    );
}

// ---- broker_cache (docs/lua-runtime.md §4)

fn fill_cache(cache: &Cache) {
    for line in std::fs::read_to_string(data("cbd-21.10/events-api-v1.jsonl"))
        .unwrap()
        .lines()
        .take(59)
    {
        cache.update(&Event::from_json(&serde_json::from_str(line).unwrap()).unwrap());
    }
}

#[test]
fn broker_cache_answers_from_the_events_seen() {
    let lab = Lab::new();
    fill_cache(&lab.cache);
    let script = lab.load(MINIMAL, &[]);
    let s = |e: &str| eval::<String>(&script, &format!("tostring({e})"));
    assert_eq!(s("broker_cache:get_hostname(1)"), "srv-01");
    assert_eq!(s("broker_cache:get_hostname(999)"), "nil");
    assert_eq!(s("broker_cache:get_instance_name(1)"), "Central");
    assert_eq!(s("broker_cache:get_host(1).name"), "srv-01");
    assert_eq!(s("type(broker_cache:get_host(1))"), "table");
    assert_eq!(s("broker_cache:get_notes(1)"), "Rack A1");
    assert_eq!(
        s("broker_cache:get_action_url(1)"),
        "https://cmdb.example.org/ci?host=srv-01&view=full"
    );
    assert_eq!(
        s("broker.json_encode(broker_cache:get_hostgroups(999))"),
        "[]"
    );
    assert_eq!(s("broker.json_encode(broker_cache:get_bvs(1))"), "[]");
    let groups = s("broker_cache:get_hostgroups(1)[1].group_name");
    assert_ne!(groups, "nil");
    let e = eval_err(&script, "broker_cache:get_hostname()");
    assert!(
        e.contains("bad argument #1 to 'get_hostname' (number expected, got no value)"),
        "{e}"
    );
    let e = eval_err(&script, "broker_cache:get_hostname('x')");
    assert!(e.contains("number expected, got string"), "{e}");
}

#[test]
fn broker_cache_gives_userdata_in_api_v2() {
    let lab = Lab::new();
    fill_cache(&lab.cache);
    let script = lab.load(&format!("broker_api_version = 2\n{MINIMAL}"), &[]);
    assert_eq!(
        eval::<String>(&script, "type(broker_cache:get_host(1))"),
        "userdata"
    );
    assert_eq!(
        eval::<String>(&script, "broker_cache:get_host(1).name"),
        "srv-01"
    );
}

#[test]
fn broker_cache_works_inside_init_from_the_persisted_cache() {
    let data_dir = tempfile::tempdir().unwrap();
    let cache = Cache::new();
    fill_cache(&cache);
    cache.save(data_dir.path()).unwrap();
    let mut lab = Lab::new();
    lab.cache = Cache::load(data_dir.path());
    let script = lab.load(
        "function init(conf) name = broker_cache:get_hostname(1) end\nfunction write(d) return true end",
        &[],
    );
    assert_eq!(eval::<String>(&script, "name"), "srv-01");
}

// ---- the guide's example scripts

#[test]
fn logging_every_field_of_every_event() {
    let lab = Lab::new();
    let log = lab.path("fields.log");
    let mut script = lab.load_file("log_all_fields.lua", &[("log_file", log.to_str().unwrap())]);
    script.write(&ev(
        json!({"_type": 65560, "host_id": 1, "service_id": 21, "state": 0, "output": "OK"}),
    ));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut fields: Vec<&str> = text.lines().map(|l| &l[26..]).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "INFO: _type => 65560",
            "INFO: category => 1",
            "INFO: element => 24",
            "INFO: host_id => 1",
            "INFO: output => OK",
            "INFO: service_id => 21",
            "INFO: state => 0",
        ]
    );
}

#[test]
fn status_lines_with_cache_names_and_a_filter() {
    let lab = Lab::new();
    fill_cache(&lab.cache);
    let out = lab.path("status.txt");
    let log = lab.path("status.log");
    let mut script = lab.load_file(
        "status_lines.lua",
        &[
            ("file", out.to_str().unwrap()),
            ("log_file", log.to_str().unwrap()),
        ],
    );
    let events = v1_events();
    let mut acked = 0;
    for event in &events[59..65] {
        acked += script.write(&Shared::Event(Arc::new(event.clone()))).acked;
    }
    assert_eq!(
        acked, 5,
        "the metric (filtered) is acknowledged with the next status"
    );
    let text = std::fs::read_to_string(&out).unwrap();
    // Outputs may span lines; each status starts one with its prefix.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("HOST:") || l.starts_with("SERVICE:"))
        .collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("HOST:srv-"), "{text}");
    assert!(lines[1].starts_with("SERVICE:srv-"), "{text}");
    assert!(
        !text.contains("unknown"),
        "every name is in the cache: {text}"
    );
}

// ---- through the service

async fn start(dir: &Path, max_queue: Option<usize>) -> Server {
    let mut config = Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo: brokerstream::config::BbdoConfig::disabled(),
        ..Config::default()
    };
    config.lua.event_queue_max_size = max_queue;
    Server::start_with(config).await
}

fn install(dir: &Path, script: &str) -> String {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::copy(data(&format!("lua/{script}")), scripts.join(script)).unwrap();
    script.to_owned()
}

async fn create_lua(server: &Server, name: &str, path: &str, params: Value) -> Value {
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": name, "kind": "lua", "path": path, "parameters": params}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body:#}");
    body
}

#[tokio::test]
async fn a_lua_output_created_over_the_api_writes_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let script = install(dir.path(), "status_lines.lua");
    let out = dir.path().join("status.txt");
    let log = dir.path().join("status.log");
    create_lua(
        &server,
        "statuses",
        &script,
        json!([
            {"name": "file", "type": "string", "value": out.to_str().unwrap()},
            {"name": "log_file", "type": "string", "value": log.to_str().unwrap()},
        ]),
    )
    .await;
    let (code, _) = server
        .post_events(&[
            host(1, "srv-01"),
            host_status(1, 1, "DOWN"),
            metric(1, 2, "cpu", 1.5),
            service(1, 2, "cpu"),
            service_status(1, 2, 2),
        ])
        .await;
    assert_eq!(code, 200);
    let lines = wait_lines(&out, 2).await;
    assert_eq!(lines, ["HOST:srv-01;1;DOWN", "SERVICE:srv-01;cpu;2"]);
    let status = server
        .wait_status("statuses", "all acknowledged", |s| {
            s["counters"]["acknowledged"] == 5
        })
        .await;
    assert_eq!(status["state"], "running");
    assert_eq!(status["counters"]["received"], 5);
    assert_eq!(status["counters"]["written"], 2);
    assert_eq!(status["counters"]["filtered_out"], 3);
    assert_eq!(status["queue_depth"], 0);
    let kinds = server.get_json("/api/v1/kinds").await;
    assert!(kinds.as_array().unwrap().iter().any(|k| k["name"] == "lua"));
    server.stop().await;
}

/// What the output's script log (`GET /api/v1/outputs/{name}/logs`) holds,
/// as `LEVEL: text` lines.
async fn script_log(server: &Server, name: &str) -> Vec<String> {
    let logs = server
        .get_json(&format!("/api/v1/outputs/{name}/logs"))
        .await;
    logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{}: {}",
                l["level"].as_str().unwrap(),
                l["text"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn lines_a_script_writes_to_its_own_log_file_show_in_its_script_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    // Like Centreon's library: a shebang line, the log file set in init(),
    // in a directory that does not exist yet (/var/log/centreon-broker on a
    // machine without Centreon).
    std::fs::write(
        scripts.join("own_log.lua"),
        "#!/usr/bin/lua\n\
         function init(conf)\n\
           broker_log:info(0, 'before set_parameters')\n\
           broker_log:set_parameters(2, conf.logfile)\n\
           broker_log:info(1, 'init done')\n\
           broker_log:error(3, 'too detailed')\n\
         end\n\
         function write(e)\n\
           broker_log:warning(2, 'event ' .. e.category .. ':' .. e.element)\n\
           return true\n\
         end\n",
    )
    .unwrap();
    let logfile = dir.path().join("var-log/centreon-broker/own_log.log");
    create_lua(
        &server,
        "own-log",
        "own_log.lua",
        json!([{"name": "logfile", "type": "string", "value": logfile.to_str().unwrap()}]),
    )
    .await;
    let (code, _) = server
        .post_events(&[host(1, "srv-01"), host_status(1, 0, "UP")])
        .await;
    assert_eq!(code, 200);
    server
        .wait_status("own-log", "both acknowledged", |s| {
            s["counters"]["acknowledged"] == 2
        })
        .await;
    assert_eq!(
        script_log(&server, "own-log").await,
        [
            "INFO: before set_parameters",
            "INFO: init done",
            "WARNING: event 1:12",
            "WARNING: event 1:14"
        ]
    );
    let text = std::fs::read_to_string(&logfile).unwrap();
    let in_file: Vec<&str> = text.lines().map(|l| &l[26..]).collect();
    assert_eq!(
        in_file,
        [
            "INFO: init done",
            "WARNING: event 1:12",
            "WARNING: event 1:14"
        ]
    );
    // The detail page shows them too.
    let page = server.get("/outputs/own-log").await.text().await.unwrap();
    assert!(page.contains("WARNING: event 1:14"), "{page}");

    // A log file that cannot be written: said once, the lines still shown.
    std::fs::write(dir.path().join("not-a-dir"), "").unwrap();
    let blocked = dir.path().join("not-a-dir/own_log.log");
    create_lua(
        &server,
        "blocked-log",
        "own_log.lua",
        json!([{"name": "logfile", "type": "string", "value": blocked.to_str().unwrap()}]),
    )
    .await;
    server
        .post_events(&[host_status(1, 1, "DOWN"), host_status(1, 0, "UP")])
        .await;
    server
        // A new output starts at the journal's head: these two only.
        .wait_status("blocked-log", "both acknowledged", |s| {
            s["counters"]["acknowledged"] == 2
        })
        .await;
    let lines = script_log(&server, "blocked-log").await;
    let refusals: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("ERROR: Unable to open the log file"))
        .collect();
    assert_eq!(refusals.len(), 1, "{lines:#?}");
    assert!(refusals[0].contains("not-a-dir/own_log.log"), "{lines:#?}");
    assert!(
        refusals[0].contains("shown in the output's script log only"),
        "{lines:#?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("WARNING: event"))
            .count(),
        2,
        "{lines:#?}"
    );
    let absent = server.get("/api/v1/outputs/absent/logs").await;
    assert_eq!(absent.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn parameters_reach_init_as_centreon_passes_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    // Logs each parameter as `name=math.type|type:value`, sorted.
    std::fs::write(
        scripts.join("conf.lua"),
        "#!/usr/bin/lua\n\
         function init(conf)\n\
           local names = {}\n\
           for name in pairs(conf) do names[#names + 1] = name end\n\
           table.sort(names)\n\
           for _, name in ipairs(names) do\n\
             local v = conf[name]\n\
             broker_log:info(0, name .. '=' .. (math.type(v) or type(v)) .. ':' .. tostring(v))\n\
           end\n\
         end\n\
         function write(e) return true end\n",
    )
    .unwrap();
    // The shapes Centreon's certified connectors document: the library's
    // `_sc` names, empty strings it replaces with its defaults, 0/1
    // numbers it checks itself, a number past 32 bits, typeless rows.
    create_lua(
        &server,
        "conf",
        "conf.lua",
        json!([
            {"name": "accepted_hostgroups", "type": "string", "value": ""},
            {"name": "_sc_custom", "type": "string", "value": "a,b"},
            {"name": "hard_only", "type": "number", "value": "0"},
            {"name": "log_level", "type": "number", "value": 3},
            {"name": "max_all_queues_age", "type": "number", "value": "4294967296"},
            {"name": "ratio", "type": "number", "value": " 0.5 "},
            {"name": "http_server_url", "type": "", "value": "https://x.example/api?a=1&b=%20"},
            {"name": "proxy_password", "type": "password", "value": ""},
        ]),
    )
    .await;
    server
        .wait_status("conf", "loaded", |s| s["state"] == "running")
        .await;
    let lines = script_log(&server, "conf").await;
    assert_eq!(
        lines,
        [
            "INFO: _sc_custom=string:a,b",
            "INFO: accepted_hostgroups=string:",
            "INFO: hard_only=integer:0",
            "INFO: http_server_url=string:https://x.example/api?a=1&b=%20",
            "INFO: log_level=integer:3",
            "INFO: max_all_queues_age=float:4294967296.0",
            "INFO: proxy_password=string:",
            "INFO: ratio=float:0.5",
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn what_a_script_prints_goes_to_its_script_log_without_its_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("prints.lua"),
        "function init(conf)\n\
           print('token', conf.token, 42, nil)\n\
           io.write('partial ', 1, ' ')\n\
           io.write('line\\nnext ')\n\
           io.stdout:write('line\\n'):write('chained\\n')\n\
           io.stderr:write('oops ' .. conf.token .. '\\n')\n\
         end\n\
         function write(e) return true end\n",
    )
    .unwrap();
    create_lua(
        &server,
        "prints",
        "prints.lua",
        json!([{"name": "token", "type": "password", "value": "hunter2-secret"}]),
    )
    .await;
    server
        .wait_status("prints", "loaded", |s| s["state"] == "running")
        .await;
    assert_eq!(
        script_log(&server, "prints").await,
        [
            "INFO: token\t[redacted]\t42\tnil",
            "INFO: partial 1 line",
            "INFO: next line",
            "INFO: chained",
            "WARNING: oops [redacted]",
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_broken_script_is_retried_with_its_error_in_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("broken.lua"),
        "function init(conf)\n  local x = \nend\n",
    )
    .unwrap();
    create_lua(&server, "broken", "broken.lua", json!([])).await;
    let status = server
        .wait_status("broken", "retrying", |s| s["state"] == "retrying")
        .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("could not be loaded") && error.contains("broken.lua:3:"),
        "{error}"
    );
    assert!(status["next_retry_at"].is_string());
    // Fixing the script and editing the output makes it run.
    std::fs::write(scripts.join("broken.lua"), MINIMAL).unwrap();
    let response = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/broken",
            &json!({"enabled": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    server
        .wait_status("broken", "running", |s| s["state"] == "running")
        .await;
    server.stop().await;
}

#[tokio::test]
async fn scripts_outside_the_script_directories_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    std::fs::write(dir.path().join("outside.lua"), MINIMAL).unwrap();
    for path in [
        "../outside.lua",
        dir.path().join("outside.lua").to_str().unwrap(),
        "missing.lua",
    ] {
        let response = server
            .post_json(
                "/api/v1/outputs",
                &json!({"name": "x", "kind": "lua", "path": path}),
            )
            .await;
        assert_eq!(response.status(), 422, "{path}");
        let body: Value = response.json().await.unwrap();
        assert!(body["fields"]["path"].is_string(), "{body}");
    }
    let response = server
        .post_json("/api/v1/outputs", &json!({"name": "x", "kind": "lua"}))
        .await;
    assert_eq!(response.status(), 422);
    server.stop().await;
}

#[tokio::test]
async fn queued_events_are_delivered_again_to_a_new_script_state() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let script = install(dir.path(), "queue.lua");
    let out = dir.path().join("queue.jsonl");
    let params = |fail: &str| {
        json!([
            {"name": "file", "type": "string", "value": out.to_str().unwrap()},
            {"name": "fail", "type": "string", "value": fail},
        ])
    };
    create_lua(&server, "queue", &script, params("yes")).await;
    let (code, _) = server
        .post_events(&[
            host_status(1, 0, "a"),
            host_status(2, 0, "b"),
            host_status(3, 0, "c"),
        ])
        .await;
    assert_eq!(code, 200);
    let status = server
        .wait_status("queue", "written", |s| s["counters"]["written"] == 3)
        .await;
    assert_eq!(status["counters"]["acknowledged"], 0);
    assert_eq!(status["queue_depth"], 3);
    // The destination comes back: a new script state (as after a restart)
    // gets the unacknowledged events again and acknowledges them from flush().
    let response = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/queue",
            &json!({"parameters": params("no")}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let lines = wait_lines(&out, 3).await;
    let ids: Vec<i64> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["host_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let status = server
        .wait_status("queue", "acknowledged", |s| s["queue_depth"] == 0)
        .await;
    assert!(
        status["flushes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["reason"] == "idle" && f["events"] == 3),
        "{status:#}"
    );
    server.stop().await;
}

#[tokio::test]
async fn past_event_queue_max_size_only_flush_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(5)).await;
    let script = install(dir.path(), "never_ack.lua");
    let flushes = dir.path().join("flushes.txt");
    create_lua(
        &server,
        "stuck",
        &script,
        json!([{"name": "flushes", "type": "string", "value": flushes.to_str().unwrap()}]),
    )
    .await;
    let events: Vec<Value> = (1..=20).map(|i| host_status(i, 0, "x")).collect();
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("stuck", "5 written", |s| s["counters"]["written"] == 5)
        .await;
    let before = wait_lines(&flushes, 1).await.len();
    // flush() keeps being called while write() is not.
    let after = wait_lines(&flushes, before + 2).await.len();
    assert!(after >= before + 2);
    let status = server.status("stuck").await;
    assert_eq!(status["counters"]["written"], 5);
    assert_eq!(status["counters"]["received"], 5);
    assert_eq!(status["queue_depth"], 20);
    // The status and the page say why nothing moves.
    assert!(status["held_back_since"].is_string(), "{status:#}");
    let page = server.get("/outputs/stuck").await.text().await.unwrap();
    assert!(page.contains("id=\"held-back\""), "{page}");
    assert!(
        page.contains("the script has 5 events it has not acknowledged"),
        "{page}"
    );
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("brokerstream_output_held_back{output=\"stuck\"} 1"),
        "{metrics}"
    );
    // A manual flush is recorded even when it acknowledges nothing.
    let response = server
        .client
        .post(server.url("/api/v1/outputs/stuck/flush"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["reason"], "manual");
    assert_eq!(record["result"], "flush() returned false");
    server.stop().await;
}

/// A script written like Centreon's libraries: `write()` never
/// acknowledges, `flush()` sends (acknowledges) only once its queue is old
/// enough, here on its third call. Held back at the bound, the output goes
/// on by itself, round after round, and the pause ends with it.
#[tokio::test]
async fn held_back_at_the_bound_a_script_that_sends_from_flush_drains_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Some(5)).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("ages.lua"),
        "local calls = 0\n\
         function init(conf) end\n\
         function write(e) return false end\n\
         function flush()\n\
           calls = calls + 1\n\
           if calls < 3 then return false end\n\
           calls = 0\n\
           return true\n\
         end\n",
    )
    .unwrap();
    create_lua(&server, "ages", "ages.lua", json!([])).await;
    let events: Vec<Value> = (1..=20).map(|i| host_status(i, 0, "x")).collect();
    assert_eq!(server.post_events(&events).await.0, 200);
    let status = server
        .wait_status("ages", "all 20 acknowledged", |s| {
            s["counters"]["acknowledged"] == 20
        })
        .await;
    assert_eq!(status["counters"]["written"], 20, "{status:#}");
    // Each round of 5 ended with a flush that acknowledged it.
    let status = server
        .wait_status("ages", "no longer held back", |s| {
            s["held_back_since"].is_null()
        })
        .await;
    assert_eq!(status["queue_depth"], 0, "{status:#}");
    server.stop().await;
}

/// Category `local` never reaches a script, even one with no filter: it
/// is counted as filtered out and acknowledged with the rest.
#[tokio::test]
async fn local_events_never_reach_a_script() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let seen = dir.path().join("seen.txt");
    std::fs::write(
        scripts.join("seen.lua"),
        "local out\n\
         function init(conf) out = conf.out end\n\
         function write(e)\n\
           local f = io.open(out, 'a'); f:write(e.category, ':', e.element, '\\n'); f:close()\n\
           return true\n\
         end\n",
    )
    .unwrap();
    create_lua(
        &server,
        "seen",
        "seen.lua",
        json!([{"name": "out", "type": "string", "value": seen.to_str().unwrap()}]),
    )
    .await;
    let local_stop = json!({"_type": (9 << 16) | 1, "category": 9, "element": 1});
    let (code, answer) = server
        .post_events(&[host_status(1, 0, "x"), local_stop, host_status(2, 0, "y")])
        .await;
    assert_eq!(code, 200, "{answer}");
    let status = server
        .wait_status("seen", "3 acknowledged", |s| {
            s["counters"]["acknowledged"] == 3
        })
        .await;
    assert_eq!(status["counters"]["written"], 2, "{status:#}");
    assert_eq!(status["counters"]["filtered_out"], 1, "{status:#}");
    assert_eq!(wait_lines(&seen, 2).await, ["1:14", "1:14"]);
    server.stop().await;
}

/// Posts to `POST /api/v1/outputs/{name}/flush` and gives the record.
async fn flush_now(server: &Server, name: &str) -> Value {
    let response = server
        .client
        .post(server.url(&format!("/api/v1/outputs/{name}/flush")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_script_without_flush_is_not_failing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    // flush() is optional in Centreon. This one acknowledges every second
    // event, so one of five stays pending and every flush finds it waiting.
    std::fs::write(
        scripts.join("no_flush.lua"),
        "local n = 0\n\
         function init(conf) end\n\
         function write(e)\n\
           n = n + 1\n\
           return n % 2 == 0\n\
         end\n",
    )
    .unwrap();
    create_lua(&server, "noflush", "no_flush.lua", json!([])).await;
    let events: Vec<Value> = (1..=5).map(|i| host_status(i, 0, "x")).collect();
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("noflush", "4 acknowledged", |s| {
            s["counters"]["written"] == 5 && s["counters"]["acknowledged"] == 4
        })
        .await;
    // A manual flush has nothing to call: answered, not recorded.
    let record = flush_now(&server, "noflush").await;
    assert_eq!(record["events"], 0, "{record:#}");
    let status = server.status("noflush").await;
    assert_eq!(status["state"], "running", "{status:#}");
    assert_eq!(status["counters"]["failed"], 0, "{status:#}");
    assert_eq!(status["last_error"], Value::Null, "{status:#}");
    assert_eq!(status["flushes"], json!([]), "{status:#}");
    assert_eq!(status["last_flush"], Value::Null, "{status:#}");
    let overview = server.get("/").await.text().await.unwrap();
    assert!(overview.contains("data-output=\"noflush\""), "{overview}");
    assert!(!overview.contains(">failed</span>"), "{overview}");
    let detail = server.get("/outputs/noflush").await.text().await.unwrap();
    assert!(!detail.contains("no flush() function"), "{detail}");
    assert!(!detail.contains("bar-bad"), "{detail}");
    assert!(detail.contains("No flush yet."), "{detail}");
    assert!(detail.contains("health health-ok"), "{detail}");
    server.stop().await;
}

#[tokio::test]
async fn flushes_returning_false_are_folded_and_said_in_last_error() {
    let dir = tempfile::tempdir().unwrap();
    // Thresholds of a second, so that the health turns within the test.
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo: brokerstream::config::BbdoConfig::disabled(),
        ..Config::default()
    };
    config.health = brokerstream::output::health::HealthSettings {
        no_progress_secs: 1,
        buffer_age_factor: 0.0,
        script_no_progress_secs: 1,
        ..Default::default()
    };
    let server = Server::start_with(config).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    // Like Centreon's certified connectors: write() queues, flush() sends
    // and returns false while the destination is down (here: until the
    // switch file exists), logging the library's error.
    std::fs::write(
        scripts.join("down.lua"),
        "local switch\n\
         function init(conf)\n\
           switch = conf.switch\n\
           broker_log:set_parameters(3, conf.logfile)\n\
         end\n\
         function write(e)\n\
           return false\n\
         end\n\
         function flush()\n\
           local f = io.open(switch, 'r')\n\
           if f then f:close() return true end\n\
           broker_log:error(1, '[sc_flush:flush_payload]: [CURL-EASY][COULDNT_CONNECT] Could not connect to server')\n\
           return false\n\
         end\n",
    )
    .unwrap();
    let switch = dir.path().join("up");
    let logfile = dir.path().join("down.log");
    create_lua(
        &server,
        "down",
        "down.lua",
        json!([
            {"name": "switch", "type": "string", "value": switch.to_str().unwrap()},
            {"name": "logfile", "type": "string", "value": logfile.to_str().unwrap()},
        ]),
    )
    .await;
    let events: Vec<Value> = (1..=3).map(|i| host_status(i, 0, "x")).collect();
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("down", "3 written", |s| s["counters"]["written"] == 3)
        .await;
    for _ in 0..30 {
        let record = flush_now(&server, "down").await;
        assert_eq!(record["result"], "flush() returned false", "{record:#}");
    }
    let status = server.status("down").await;
    let flushes = status["flushes"].as_array().unwrap();
    let manual: Vec<&Value> = flushes.iter().filter(|f| f["reason"] == "manual").collect();
    // Idle flushes (once a second) may come between two manual ones.
    assert!(manual.len() <= 5, "{status:#}");
    let counts: Vec<u64> = manual
        .iter()
        .map(|f| f["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 30, "{status:#}");
    let folded = manual
        .iter()
        .find(|f| f["count"].as_u64().unwrap() >= 2)
        .unwrap_or_else(|| panic!("no folded row: {status:#}"));
    assert!(folded["first_at"].as_str().unwrap() <= folded["at"].as_str().unwrap());
    assert_eq!(status["counters"]["failed"], 0, "{status:#}");
    let error = status["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("{status:#}"));
    assert!(error.starts_with("flush() returned false "), "{error}");
    assert!(error.contains(" times since "), "{error}");
    assert!(error.contains("UTC; 3 events pending"), "{error}");
    assert!(
        error.ends_with(
            "; last error logged: [sc_flush:flush_payload]: [CURL-EASY][COULDNT_CONNECT] Could not connect to server"
        ),
        "{error}"
    );
    assert!(status["last_error_at"].is_string(), "{status:#}");
    // The worker runs, the script acknowledges nothing: stalled, with the
    // script's own last error.
    let status = server
        .wait_status("down", "stalled", |s| s["health"]["state"] == "stalled")
        .await;
    let reason = status["health"]["reason"].as_str().unwrap();
    assert!(reason.starts_with("nothing acknowledged for "), "{reason}");
    assert!(reason.contains("COULDNT_CONNECT"), "{reason}");
    assert!(reason.contains("3 events pending"), "{reason}");
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("brokerstream_output_health{output=\"down\",state=\"stalled\"} 1"),
        "{metrics}"
    );
    // The detail page shows the folded row with its count.
    let detail = server.get("/outputs/down").await.text().await.unwrap();
    let shown = format!("<span class=\"count\">×{}</span>", folded["count"]);
    assert!(detail.contains(&shown), "{shown} not in {detail}");
    assert!(detail.contains("COULDNT_CONNECT"), "{detail}");

    // The destination is back: the next flush acknowledges, the error goes.
    std::fs::write(&switch, "").unwrap();
    let record = flush_now(&server, "down").await;
    assert_eq!(record["result"], "ok", "{record:#}");
    assert_eq!(record["events"], 3, "{record:#}");
    let status = server.status("down").await;
    assert_eq!(status["last_error"], Value::Null, "{status:#}");
    assert_eq!(status["last_error_at"], Value::Null, "{status:#}");
    assert_eq!(status["counters"]["acknowledged"], 3, "{status:#}");
    let first = &status["flushes"][0];
    assert_eq!(first["result"], "ok", "{status:#}");
    assert_eq!(first["events"], 3, "{status:#}");
    assert_eq!(first["count"], 1, "{status:#}");
    assert_eq!(status["health"]["state"], "ok", "{status:#}");
    server.stop().await;
}

#[tokio::test]
async fn a_blocking_script_does_not_stall_other_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(
        scripts.join("slow.lua"),
        "function init(conf) end\nfunction write(d) local t = os.time() + 2 while os.time() < t do end return true end",
    )
    .unwrap();
    create_lua(&server, "slow", "slow.lua", json!([])).await;
    let out = dir.path().join("fast.txt");
    server.create_file_output("fast", &out, json!({})).await;
    assert_eq!(server.post_events(&[host_status(1, 0, "x")]).await.0, 200);
    wait_lines(&out, 1).await;
    let status = tokio::time::timeout(Duration::from_secs(1), server.status("slow")).await;
    assert!(status.is_ok(), "the API answers while the script blocks");
    server.stop().await;
}

// ---- the command line

fn brokerstream(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(args)
        .env("BROKERSTREAM_LOG", "off")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn run_script_prints_logs_calls_and_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("s.lua");
    std::fs::write(
        &script,
        "function init(c) broker_log:info(0, 'n is ' .. math.type(c.n)) end\n\
         function write(d) return d.element == 14 end\n\
         function flush() return false end\n",
    )
    .unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(
        &events,
        format!(
            "{}\n{}\n{}\n",
            host(1, "a"),
            host_status(1, 0, "x"),
            host(2, "b")
        ),
    )
    .unwrap();
    let (ok, out) = brokerstream(&[
        "run-script",
        script.to_str().unwrap(),
        "--param",
        "n=number:5",
        "--events",
        events.to_str().unwrap(),
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("log INFO: n is integer"), "{out}");
    assert!(
        out.contains("event 1 (1:12 host): write() returned false"),
        "{out}"
    );
    assert!(
        out.contains("event 2 (1:14 host_status): write() returned true (acknowledges 2)"),
        "{out}"
    );
    // flush() comes once the burst is over, not between writes, and again
    // at stop.
    let lines: Vec<&str> = out.lines().collect();
    let last_write = lines.iter().rposition(|l| l.starts_with("event ")).unwrap();
    let flushes: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i] == "flush() returned false")
        .collect();
    assert!(flushes.len() >= 2, "{out}");
    assert!(flushes[0] > last_write, "{out}");
    assert!(out.contains("summary: 3 events, 3 handed to write(), 0 filtered out, 2 acknowledged, 1 not acknowledged"), "{out}");

    std::fs::write(
        &script,
        "function init(c) end\nfunction write(d)\n  return = 1\nend\n",
    )
    .unwrap();
    let (ok, out) = brokerstream(&["run-script", script.to_str().unwrap(), "--simulate", "3"]);
    assert!(!ok);
    assert!(out.contains("s.lua:3:"), "{out}");
}

#[test]
fn import_turns_centreon_lua_outputs_into_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let scripts = data_dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::write(scripts.join("influx.lua"), MINIMAL).unwrap();
    let config = dir.path().join("central-broker.json");
    std::fs::write(
        &config,
        json!({"centreonBroker": {"broker_name": "central-broker-master", "output": [
            {"name": "central-broker-master-sql", "type": "sql"},
            {"name": "influx", "type": "lua", "path": scripts.join("influx.lua"),
             "filters": {"category": ["neb", "storage"]},
             "lua_parameter": [
                {"name": "url", "type": "string", "value": "http://127.0.0.1:8086"},
                {"name": "max_buffer_size", "type": "number", "value": "10"},
                {"name": "flag", "type": "boolean", "value": "true"}]},
            {"name": "elsewhere", "type": "lua", "path": "/etc/passwd"},
        ]}})
        .to_string(),
    )
    .unwrap();
    let (ok, out) = brokerstream(&[
        "import",
        config.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("created: influx"), "{out}");
    assert!(
        out.contains("skipped: central-broker-master-sql: type `sql` is not a Lua output"),
        "{out}"
    );
    assert!(out.contains("skipped: influx: parameter flag"), "{out}");
    assert!(out.contains("skipped: elsewhere: path:"), "{out}");
    let (ok, out) = brokerstream(&[
        "import",
        config.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ]);
    assert!(
        ok && out.contains("skipped: influx: an output of this name already exists"),
        "{out}"
    );
}

#[test]
fn every_broker_cache_lookup() {
    let lab = Lab::new();
    for e in [
        json!({"_type": 65548, "host_id": 1, "name": "srv-01", "enabled": true, "notes_url": "h-notes", "check_command": "ping"}),
        json!({"_type": 65559, "host_id": 1, "service_id": 2, "description": "cpu", "enabled": true, "notes": "s-notes", "check_command": "check_cpu"}),
        json!({"_type": 65557, "servicegroup_id": 3, "name": "web-services"}),
        json!({"_type": 65558, "servicegroup_id": 3, "host_id": 1, "service_id": 2}),
        json!({"_type": 65585, "hostgroup_id": 8, "name": "pb-group", "alias": "PB group", "poller_id": 1, "enabled": true}),
        json!({"_type": 65586, "hostgroup_id": 8, "name": "member-name", "host_id": 1, "poller_id": 1, "enabled": true}),
        json!({"_type": 65539, "host_id": 1, "name": "CRITICALITY_LEVEL", "value": "2"}),
        json!({"_type": 196613, "index_id": 10, "host_id": 1, "service_id": 2}),
        json!({"_type": 196614, "index_id": 10, "metric_id": 100}),
        json!({"_type": 393223, "ba_id": 4, "ba_name": "web", "ba_description": "Web BA", "sla_month_percent_crit": 99.5}),
        json!({"_type": 393226, "bv_id": 5, "bv_name": "prod", "bv_description": "Production"}),
        json!({"_type": 393225, "ba_id": 4, "bv_id": 5}),
    ] {
        lab.cache.update(&Event::from_json(&e).unwrap());
    }
    for api in [1, 2] {
        let script = lab.load(&format!("broker_api_version = {api}\n{MINIMAL}"), &[]);
        let s = |e: &str| eval::<String>(&script, &format!("tostring({e})"));
        assert_eq!(s("broker_cache:get_service_description(1, 2)"), "cpu");
        assert_eq!(s("broker_cache:get_service(1, 2).description"), "cpu");
        assert_eq!(s("broker_cache:get_servicegroup_name(3)"), "web-services");
        assert_eq!(
            s("broker_cache:get_servicegroups(1, 2)[1].group_name"),
            "web-services"
        );
        assert_eq!(s("broker_cache:get_servicegroups(1, 2)[1].group_id"), "3");
        assert_eq!(s("broker_cache:get_hostgroup_name(8)"), "pb-group");
        assert_eq!(s("broker_cache:get_hostgroup_alias(8)"), "PB group");
        assert_eq!(
            s("broker_cache:get_hostgroups(1)[1].group_name"),
            "member-name"
        );
        assert_eq!(s("broker_cache:get_severity(1)"), "2");
        assert_eq!(s("math.type(broker_cache:get_severity(1))"), "integer");
        assert_eq!(s("broker_cache:get_severity(1, 2)"), "nil");
        assert_eq!(s("broker_cache:get_notes_url(1)"), "h-notes");
        assert_eq!(s("broker_cache:get_notes(1, 2)"), "s-notes");
        assert_eq!(s("broker_cache:get_check_command(1, 2)"), "check_cpu");
        assert_eq!(s("broker_cache:get_check_command(1)"), "ping");
        assert_eq!(s("broker_cache:get_action_url(1, 99)"), "nil");
        assert_eq!(s("broker_cache:get_index_mapping(10).service_id"), "2");
        assert_eq!(s("type(broker_cache:get_index_mapping(10))"), "table");
        assert_eq!(s("broker_cache:get_metric_mapping(100).index_id"), "10");
        assert_eq!(s("broker_cache:get_ba(4).ba_name"), "web");
        assert_eq!(s("broker_cache:get_bv(5).bv_description"), "Production");
        assert_eq!(s("broker.json_encode(broker_cache:get_bvs(4))"), "[5]");
        assert_eq!(s("broker_cache:get_ba(99)"), "nil");
        if api == 1 {
            assert_eq!(s("type(broker_cache:get_metric_mapping(100))"), "table");
            assert_eq!(
                s("broker_cache:get_ba(4).sla_month_percent_crit"),
                "nil",
                "v1: 3 keys"
            );
        } else {
            assert_eq!(s("type(broker_cache:get_metric_mapping(100))"), "userdata");
            assert_eq!(s("broker_cache:get_metric_mapping(100)._type"), "196620");
            assert_eq!(s("broker_cache:get_ba(4).sla_month_percent_crit"), "99.5");
            assert_eq!(s("broker_cache:get_ba(4)._type"), "393241");
            assert_eq!(s("broker_cache:get_bv(5)._type"), "393238");
        }
    }
}

#[test]
fn protobuf_events_have_proto3_defaults_in_lua() {
    let lab = Lab::new();
    let mut script = lab.load(
        "function init(conf) end\nfunction write(d) last = d return true end",
        &[],
    );
    script.write(&ev(json!({"_type": 65565, "host_id": 7, "service_id": 8})));
    assert_eq!(eval::<i64>(&script, "last.host_id"), 7);
    assert_eq!(
        eval::<i64>(&script, "last.state"),
        0,
        "unset proto3 scalars are 0"
    );
    assert_eq!(eval::<String>(&script, "last.output"), "");
    assert!(!eval::<bool>(&script, "last.checked"));
}

#[tokio::test]
async fn the_cache_answers_in_init_after_a_service_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    assert_eq!(server.post_events(&[host(1, "srv-01")]).await.0, 200);
    server.stop().await;

    let server = start(dir.path(), None).await;
    let scripts = dir.path().join("scripts");
    let out = dir.path().join("init.txt");
    std::fs::write(
        scripts.join("init_name.lua"),
        "function init(conf)\n  local f = io.open(conf.file, 'w')\n  f:write(tostring(broker_cache:get_hostname(1)), '\\n')\n  f:close()\nend\nfunction write(d) return true end\n",
    )
    .unwrap();
    create_lua(
        &server,
        "init-name",
        "init_name.lua",
        json!([{"name": "file", "type": "string", "value": out.to_str().unwrap()}]),
    )
    .await;
    assert_eq!(wait_lines(&out, 1).await, ["srv-01"]);
    server.stop().await;
}

#[test]
fn the_lua_settings_come_from_the_configuration_file() {
    use brokerstream::config::Overrides;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("brokerstream.toml");
    std::fs::write(
        &file,
        "data_dir = \"/var/lib/bs\"\n[lua]\nscript_dirs = [\"/opt/scripts\"]\npackage_path = \"/opt/lua/?.lua\"\nbbdo_version = \"3.0.1\"\nevent_queue_max_size = 50\nevent_json = \"21.10\"\nlog_rotate_bytes = 1048576\nlog_rotate_keep = 3\n",
    )
    .unwrap();
    let config = Config::load(Overrides {
        config_file: Some(file.clone()),
        ..Overrides::default()
    })
    .unwrap();
    let settings = config.lua_settings().unwrap();
    assert_eq!(settings.script_dirs, [PathBuf::from("/opt/scripts")]);
    assert_eq!(settings.package_path, "/opt/lua/?.lua");
    assert_eq!(settings.bbdo_version, "3.0.1");
    assert_eq!(settings.event_queue_max_size, 50);
    assert_eq!(settings.event_json, EventJsonStyle::Legacy2110);
    assert_eq!(
        settings.log_rotation,
        Rotation {
            max_bytes: 1_048_576,
            keep: 3
        }
    );
    let defaults = Config::default().lua_settings().unwrap();
    assert_eq!(defaults.script_dirs[0], PathBuf::from("./data/scripts"));
    assert!(defaults
        .package_path
        .contains("/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua"));
    assert!(defaults.package_path.contains("/usr/share/lua/5.3/?.lua"));
    assert_eq!(defaults.event_queue_max_size, 100_000);
    assert_eq!(
        defaults.perfdata_values,
        brokerstream::output::perfdata::Precision::Exact
    );
    assert_eq!(defaults.log_rotation, Rotation::default());
    std::fs::write(&file, "[lua]\nevent_json = \"20.04\"\n").unwrap();
    let config = Config::load(Overrides {
        config_file: Some(file.clone()),
        ..Overrides::default()
    })
    .unwrap();
    assert!(config
        .lua_settings()
        .unwrap_err()
        .to_string()
        .contains("lua.event_json"));
    std::fs::write(&file, "[lua]\nperfdata_values = \"float32\"\n").unwrap();
    let config = Config::load(Overrides {
        config_file: Some(file.clone()),
        ..Overrides::default()
    })
    .unwrap();
    assert_eq!(
        config.lua_settings().unwrap().perfdata_values,
        brokerstream::output::perfdata::Precision::Float32
    );
    std::fs::write(&file, "[lua]\nperfdata_values = \"double\"\n").unwrap();
    let config = Config::load(Overrides {
        config_file: Some(file.clone()),
        ..Overrides::default()
    })
    .unwrap();
    let error = config.lua_settings().unwrap_err().to_string();
    assert!(
        error.contains("lua.perfdata_values must be \"exact\" or \"float32\""),
        "{error}"
    );
    std::fs::write(&file, "[lua]\nscript_dir = \"/x\"\n").unwrap();
    assert!(Config::load(Overrides {
        config_file: Some(file),
        ..Overrides::default()
    })
    .is_err());
}

#[test]
fn more_json_encode_and_perfdata_edge_cases() {
    let lab = Lab::new();
    let script = lab.load(MINIMAL, &[]);
    assert!(
        eval_err(&script, "broker.json_encode({x = 1, [5] = 2})").contains("invalid key to 'next'")
    );
    assert_eq!(
        eval::<String>(&script, "broker.json_encode({1, {2, {}}, 'é'})"),
        "[1,[2,[]],\"é\"]"
    );
    let p = "broker.parse_perfdata('a=1;@10:20;~:5;;', true).a";
    assert!(eval::<bool>(&script, &format!("{p}.warning_mode")));
    assert!(!eval::<bool>(&script, &format!("{p}.critical_mode")));
    assert_eq!(
        eval::<String>(&script, &format!("tostring({p}.critical_low)")),
        "-inf"
    );
    assert_eq!(
        eval::<String>(&script, &format!("tostring({p}.warning_high)")),
        "20.0"
    );
    assert_eq!(
        eval::<String>(
            &script,
            "broker.json_encode(broker.parse_perfdata('x=1,5;2 y=3'))"
        )
        .len(),
        r#"{"x":1.5,"y":3.0}"#.len()
    );
}

#[tokio::test]
async fn lua_outputs_refuse_the_local_category_and_bad_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), None).await;
    let script = install(dir.path(), "queue.lua");
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "x", "kind": "lua", "path": script, "filters": {"category": ["local"]}}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["fields"]["filters"]
            .as_str()
            .unwrap()
            .contains("local"),
        "{body}"
    );
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "x", "kind": "lua", "path": script, "parameters": [{"name": "token", "type": "password", "value": "encrypt::abc"}]}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["fields"]["parameters.token"]
            .as_str()
            .unwrap()
            .contains("unable to decrypt"),
        "{body}"
    );
    server.stop().await;
}

#[test]
fn os_exit_cannot_stop_the_service() {
    let lab = Lab::new();
    let script = lab.load(MINIMAL, &[]);
    assert!(eval_err(&script, "os.exit(1)").contains("os.exit is not available"));
}

#[tokio::test]
async fn queued_events_survive_a_service_restart() {
    let dir = tempfile::tempdir().unwrap();
    let script = install(dir.path(), "queue.lua");
    let out = dir.path().join("queue.jsonl");
    let params = |fail: &str| {
        json!([
            {"name": "file", "type": "string", "value": out.to_str().unwrap()},
            {"name": "fail", "type": "string", "value": fail},
        ])
    };
    let server = start(dir.path(), None).await;
    create_lua(&server, "queue", &script, params("yes")).await;
    let events = [host_status(1, 0, "a"), host_status(2, 0, "b")];
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("queue", "written", |s| s["counters"]["written"] == 2)
        .await;
    server.stop().await;

    let server = start(dir.path(), None).await;
    let response = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/queue",
            &json!({"parameters": params("no")}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(wait_lines(&out, 2).await.len(), 2);
    server.stop().await;
}

#[test]
fn protobuf_nested_and_repeated_fields() {
    let lab = Lab::new();
    let mut script = lab.load(
        "function init(conf) end\nfunction write(d) last = d return true end",
        &[],
    );
    script.write(&ev(json!({"_type": 65571, "header": {"conf_version": 5}, "type": 2, "entry_type": 3, "source": 1, "expires": false, "host_id": 1})));
    assert_eq!(eval::<i64>(&script, "last.type"), 2);
    assert_eq!(eval::<i64>(&script, "last.entry_type"), 3);
    assert_eq!(eval::<i64>(&script, "last.source"), 1);
    assert!(!eval::<bool>(&script, "last.expires"));
    assert_eq!(eval::<i64>(&script, "last['header']['conf_version']"), 5);
    script.write(&ev(json!({"_type": 196616, "index_ids": [2, 3, 5]})));
    assert_eq!(
        eval::<String>(&script, "(function() local t = {} for k, v in pairs(last.index_ids) do t[#t+1] = k .. '=>' .. v end return table.concat(t, ', ') end)()"),
        "1=>2, 2=>3, 3=>5"
    );
    let lab = Lab::new();
    let mut script = lab.load(
        "broker_api_version = 2\nfunction init(conf) end\nfunction write(d) text = broker.json_encode(d) ids = d.index_ids return true end",
        &[],
    );
    script.write(&ev(json!({"_type": 196616, "index_ids": [2, 3, 5]})));
    assert_eq!(
        eval::<String>(&script, "text"),
        r#"{"_type":196616, "category":3, "element":8, "index_ids":[2,3,5], "metric_ids":[]}"#
    );
    assert_eq!(eval::<i64>(&script, "ids[3]"), 5);
}

/// Debian's `lua-cjson` (installed by scripts/setup) is a C module built
/// for Lua 5.4 that takes the Lua C API from the program loading it: it
/// loads from `package.cpath`, in the test binary and in `brokerstream`
/// itself, because build.rs exports that API from the executables.
#[test]
fn a_c_module_on_package_cpath_loads() {
    let so = Path::new("/usr/lib/x86_64-linux-gnu/lua/5.4/cjson.so");
    assert!(
        so.is_file(),
        "lua-cjson is not installed: this test needs a real C module. Run scripts/setup."
    );
    let source = "local cjson = require 'cjson'\n\
                  found = package.searchpath('cjson', package.cpath)\n\
                  function init(conf)\n\
                    broker_log:info(0, 'cjson: ' .. cjson.encode({a = {1, 2, 3}}))\n\
                  end\n\
                  function write(d)\n\
                    decoded = cjson.decode(cjson.encode({id = d.host_id, name = d.name}))\n\
                    return decoded.id == d.host_id\n\
                  end\n";
    let lab = Lab::new();
    let mut script = lab.load(source, &[]);
    assert_eq!(eval::<String>(&script, "found"), so.to_str().unwrap());
    assert_eq!(lab.logs(), ["INFO: cjson: {\"a\":[1,2,3]}"]);
    let outcome = script.write(&ev(host(7, "srv-07")));
    assert_eq!(outcome.returned.as_deref(), Some("true"), "{outcome:?}");
    assert_eq!(eval::<String>(&script, "decoded.name"), "srv-07");

    // The binary users run.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("uses_cjson.lua");
    std::fs::write(&path, source).unwrap();
    let events = dir.path().join("events.ndjson");
    std::fs::write(&events, format!("{}\n", host(7, "srv-07"))).unwrap();
    let (ok, out) = brokerstream(&[
        "run-script",
        path.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("cjson: {\"a\":[1,2,3]}"), "{out}");
    assert!(out.contains("write() returned true"), "{out}");
}
