//! The built-in Lua modules against a real InfluxDB: Debian's `influxdb`
//! package (1.6.7 on bookworm), installed by `scripts/setup`. The test
//! starts its own `influxd` on loopback ports with a throw-away
//! configuration and data directories, and stops it at the end.
//!
//! `start_influx` is shared with the native `influxdb` output's tests.
//!
//! influxd 1.6 is run as `influxd run -config FILE`; the file sets
//! `reporting-disabled`, the RPC `bind-address`, `[meta] dir`,
//! `[data] dir` / `wal-dir`, `[http] bind-address`, and turns off the
//! `_internal` monitor store and continuous queries.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brokerstream::output::lua::modules::register;
use serde_json::Value;

/// A running `influxd`, stopped when dropped (also when a test fails).
pub(crate) struct Influx {
    child: Child,
    pub(crate) base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn influxd_path() -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("influxd"))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "influxd is not installed: this test needs a real InfluxDB. \
             Run scripts/setup (it installs Debian's `influxdb` package) and try again."
        ),
    }
}

fn write_config(dir: &Path, rpc_port: u16, http_port: u16) -> std::path::PathBuf {
    let d = dir.display();
    let config = format!(
        r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{d}/meta"

[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  log-enabled = false
"#
    );
    let path = dir.join("influxdb.conf");
    std::fs::write(&path, config).expect("write the influxd configuration");
    path
}

pub(crate) fn start_influx() -> Influx {
    let influxd = influxd_path();
    let dir = tempfile::tempdir().expect("temporary directory");
    let http_port = free_port();
    let config = write_config(dir.path(), free_port(), http_port);
    let log = std::fs::File::create(dir.path().join("influxd.log")).expect("log file");
    let child = Command::new(influxd)
        .arg("run")
        .arg("-config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .expect("start influxd");
    let mut influx = Influx {
        child,
        base: format!("http://127.0.0.1:{http_port}"),
        _dir: dir,
    };
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{}/ping", influx.base)).send() {
            if r.status().as_u16() == 204 {
                return influx;
            }
        }
        if let Ok(Some(status)) = influx.child.try_wait() {
            let log =
                std::fs::read_to_string(influx._dir.path().join("influxd.log")).unwrap_or_default();
            panic!("influxd exited ({status}) before answering /ping:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "influxd did not answer /ping within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn query(influx: &Influx, db: &str, q: &str) -> Value {
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/query", influx.base))
        .form(&[("db", db), ("q", q)])
        .send()
        .expect("query InfluxDB");
    assert_eq!(response.status().as_u16(), 200, "query {q}");
    serde_json::from_str(&response.text().expect("query body")).expect("JSON from /query")
}

/// Centreon's guide writes to InfluxDB with `socket.http` and an `ltn12`
/// string source; the same script runs here unchanged, then reads the
/// points back with `/query`. `cURL` writes a second series.
#[test]
fn socket_http_and_curl_write_line_protocol_to_influxdb() {
    let influx = start_influx();
    query(&influx, "", "CREATE DATABASE \"centreon\"");

    let lua = mlua::Lua::new();
    register(&lua).expect("register the modules");
    lua.globals()
        .set("influx", influx.base.clone())
        .expect("set a global");
    let (result, code, queried): (i64, i64, String) = lua
        .load(
            r#"
            local http = require("socket.http")
            local ltn12 = require("ltn12")
            local url = require("socket.url")

            local http_post_data = "host_status,host=central state=0i 1600000000000000000\n"
              .. "host_status,host=poller1 state=1i 1600000000000000000\n"
            local http_result_body = {}
            local hr_result, hr_code, hr_header, hr_s = http.request{
              url = influx .. "/write?db=centreon",
              method = "POST",
              -- sink is where the request result's body will go
              sink = ltn12.sink.table(http_result_body),
              -- the request body is given as an LTN12 source
              source = ltn12.source.string(http_post_data),
              headers = {
                -- mandatory for a POST request with a body
                ["content-length"] = string.len(http_post_data)
              }
            }
            assert(hr_code == 204, "write: " .. tostring(hr_code) .. " " .. table.concat(http_result_body))

            local body, code = http.request(influx .. "/query?db=centreon&q="
              .. url.escape("SELECT state FROM host_status WHERE host = 'poller1'"))
            assert(code == 200, tostring(code))

            local curl = require("cURL")
            local answer = ""
            local c = curl.easy{
              url = influx .. "/write?db=centreon&precision=s",
              post = true,
              httpheader = { "Content-Type: text/plain" },
              postfields = "metric,host=central,service=ping rta=0.42 1600000000",
              writefunction = function(chunk) answer = answer .. chunk end,
            }
            c:perform()
            local curl_code = c:getinfo(curl.INFO_RESPONSE_CODE)
            c:close()
            assert(curl_code == 204, "cURL write: " .. tostring(curl_code) .. " " .. answer)
            return hr_result, hr_code, body
            "#,
        )
        .eval()
        .expect("the Lua snippet runs");
    assert_eq!((result, code), (1, 204));

    let from_lua: Value = serde_json::from_str(&queried).expect("JSON queried from Lua");
    assert_eq!(
        from_lua["results"][0]["series"][0]["values"][0][1],
        Value::from(1),
        "{from_lua}"
    );

    let states = query(
        &influx,
        "centreon",
        "SELECT state FROM host_status GROUP BY host",
    );
    let series = states["results"][0]["series"]
        .as_array()
        .expect("one series per host");
    let mut seen: Vec<(String, i64)> = series
        .iter()
        .map(|s| {
            (
                s["tags"]["host"].as_str().unwrap_or_default().to_string(),
                s["values"][0][1].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![("central".to_string(), 0), ("poller1".to_string(), 1)]
    );

    let metrics = query(&influx, "centreon", "SELECT rta FROM metric");
    assert_eq!(
        metrics["results"][0]["series"][0]["values"][0][1],
        Value::from(0.42),
        "{metrics}"
    );
}
