//! `brokerstream import` on Centreon Broker configurations as Centreon Web
//! writes them for the central broker (tests/data/centreon-21.10/ and
//! centreon-24.10/central-broker.json: every value a string, `lua_parameter`
//! always a list, `filters.category` a list), and on one edited by hand
//! (central-broker-edited.json: `lua_parameter` as one object, `filters`
//! as the string "all", Centreon's generic keys, names Centreon ignores, a
//! password Centreon encrypted). The real binary imports them; a real
//! `brokerstream serve` then runs what was kept, and each script writes the
//! `conf` its `init` was given, so the test reads what reached the script.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Process;

/// Where the files name the scripts: Centreon's packages install them
/// there. The test lays its scripts in a directory of its own and points
/// the files at it.
const CENTREON_LUA: &str = "/usr/share/centreon-broker/lua/";

struct Setup {
    dir: tempfile::TempDir,
    scripts: PathBuf,
    config_json: PathBuf,
}

impl Setup {
    /// `data_file` (under tests/data/) with its scripts in a temporary
    /// directory, and a brokerstream.toml whose `[lua]` is `lua_extra`
    /// plus that directory.
    fn new(data_file: &str, lua_extra: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let scripts = dir.path().join("scripts");
        std::fs::create_dir(&scripts).unwrap();
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(data_file);
        let text = std::fs::read_to_string(&source).unwrap();
        let json: Value = serde_json::from_str(&text).unwrap();
        // Every Lua output's script, where the file names it.
        for output in json["centreonBroker"]["output"].as_array().unwrap() {
            if let Some(path) = output["path"].as_str() {
                let file = path.strip_prefix(CENTREON_LUA).unwrap();
                std::fs::write(scripts.join(file), dump_script(&scripts.join(file))).unwrap();
            }
        }
        let config_json = dir.path().join("central-broker.json");
        let here = format!("{}/", scripts.display());
        std::fs::write(&config_json, text.replace(CENTREON_LUA, &here)).unwrap();
        std::fs::write(
            dir.path().join("brokerstream.toml"),
            format!(
                "[lua]\nscript_dirs = [\"{}\"]\n{lua_extra}",
                scripts.display()
            ),
        )
        .unwrap();
        Setup {
            dir,
            scripts,
            config_json,
        }
    }

    fn toml(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("brokerstream.toml")).unwrap()
    }

    /// `brokerstream import` as an administrator runs it: its exit status
    /// and everything it printed.
    fn import(&self) -> (bool, String) {
        let output = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
            .arg("import")
            .arg(&self.config_json)
            .arg("--config")
            .arg(self.dir.path().join("brokerstream.toml"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .env("BROKERSTREAM_LOG", "off")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }

    /// What the script `file` was given by `init`, once it has run.
    async fn conf_of(&self, file: &str) -> Value {
        let dump = self.scripts.join(format!("{file}.conf.json"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&dump) {
                if let Ok(value) = serde_json::from_str::<Value>(&text) {
                    return value;
                }
            }
            assert!(Instant::now() < deadline, "{file}: init never ran");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A stream connector that writes its `conf` and what
/// `broker.bbdo_version()` answers next to itself, as JSON.
fn dump_script(script: &Path) -> String {
    format!(
        "function init(conf)\n\
         \x20 local f = assert(io.open({:?}, 'w'))\n\
         \x20 f:write(broker.json_encode({{conf = conf, bbdo = broker.bbdo_version()}}))\n\
         \x20 f:close()\n\
         end\n\
         function write(e) return true end\n",
        format!("{}.conf.json", script.display())
    )
}

/// The lines of `out` that start with `prefix`, without it.
fn lines<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines().filter_map(|l| l.strip_prefix(prefix)).collect()
}

fn parameter<'a>(output: &'a Value, name: &str) -> &'a Value {
    output["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no parameter {name} in {output}"))
}

#[tokio::test]
async fn centreon_21_10_central_broker_json() {
    let setup = Setup::new("centreon-21.10/central-broker.json", "");
    let (ok, out) = setup.import();
    assert!(ok, "{out}");
    assert_eq!(lines(&out, "created: "), ["Splunk-Events"], "{out}");
    assert_eq!(
        lines(&out, "skipped: "),
        [
            "central-broker-master-sql: type `sql` is not a Lua output",
            "centreon-broker-master-rrd: type `ipv4` is not a Lua output",
            "central-broker-master-perfdata: type `storage` is not a Lua output",
            // Centreon Web keeps an empty value; Centreon Broker then does
            // not start the output either.
            "influxdb2-metrics: parameters.max_buffer_size: lua: unable to read 'max_buffer_size' content as a number",
        ],
        "{out}"
    );
    // 21.10 writes no bbdo_version: 2.0.0 on both sides, nothing to say.
    assert_eq!(
        lines(&out, "note: "),
        ["Splunk Events: renamed to `Splunk-Events`: an output name may hold only letters, digits, '-', '_' and '.'"],
        "{out}"
    );
    assert!(
        out.contains("1 output(s) created, 4 item(s) skipped, 1 note(s)"),
        "{out}"
    );
    for secret in ["splunk-token-2110", "db-secret-2110", "influx-key-2110"] {
        assert!(!out.contains(secret), "{out}");
    }

    let service = Process::serve_with_config(setup.dir.path(), &setup.toml(), &[]).await;
    let given = setup.conf_of("splunk-events-apiv2.lua").await;
    let conf = &given["conf"];
    assert_eq!(
        conf["http_server_url"],
        "https://splunk.example.com:8088/services/collector"
    );
    assert_eq!(conf["splunk_token"], "splunk-token-2110");
    assert_eq!(conf["splunk_index"], "centreon");
    // `number` parameters reach the script as Lua integers, as in Centreon.
    assert!(
        conf["max_buffer_size"].is_i64() && conf["max_buffer_size"] == 10,
        "{given}"
    );
    assert!(
        conf["log_level"].is_i64() && conf["log_level"] == 1,
        "{given}"
    );
    assert_eq!(given["bbdo"], "2.0.0");
    let splunk = service.get_json("/api/v1/outputs/Splunk-Events").await;
    assert_eq!(splunk["kind"], "lua");
    assert_eq!(splunk["filters"]["category"], serde_json::json!(["neb"]));
    assert_eq!(parameter(&splunk, "splunk_token")["type"], "password");
    assert!(
        !splunk.to_string().contains("splunk-token-2110"),
        "{splunk}"
    );
    assert_eq!(
        service
            .get(&format!(
                "{}/api/v1/outputs/influxdb2-metrics",
                service.base
            ))
            .await,
        404
    );

    // Again, with the service running: nothing is created twice.
    let (ok, out) = setup.import();
    assert!(ok, "{out}");
    assert!(lines(&out, "created: ").is_empty(), "{out}");
    assert!(
        out.contains("skipped: Splunk-Events: an output of this name already exists"),
        "{out}"
    );
    service.terminate().await;
}

#[tokio::test]
async fn centreon_24_10_central_broker_json() {
    let setup = Setup::new("centreon-24.10/central-broker.json", "");
    let (ok, out) = setup.import();
    assert!(ok, "{out}");
    assert_eq!(
        lines(&out, "created: "),
        ["servicenow-em-events", "elastic-metrics"],
        "{out}"
    );
    assert_eq!(
        lines(&out, "skipped: "),
        [
            "central-broker-master-unified-sql: type `unified_sql` is not a Lua output",
            "centreon-broker-master-rrd: type `bbdo_client` is not a Lua output",
            "brokerstream: type `bbdo_client` is not a Lua output",
        ],
        "{out}"
    );
    // Centreon runs BBDO 3 here, brokerstream's scripts would be told 2.0.0.
    assert_eq!(
        lines(&out, "note: "),
        ["centreonBroker.bbdo_version: Centreon Broker runs `3.0.1`, brokerstream's lua.bbdo_version is `2.0.0`: set lua.bbdo_version = \"3.0.1\" so that broker.bbdo_version() answers the scripts as it did"],
        "{out}"
    );

    let service = Process::serve_with_config(setup.dir.path(), &setup.toml(), &[]).await;
    let snow = setup.conf_of("servicenow-em-events-apiv2.lua").await;
    assert_eq!(snow["conf"]["password"], "snow-password-2410");
    assert_eq!(snow["conf"]["client_secret"], "snow-secret-2410");
    assert!(snow["conf"]["log_level"].is_i64() && snow["conf"]["log_level"] == 2);
    assert_eq!(snow["bbdo"], "2.0.0");
    let elastic = setup.conf_of("elasticsearch-metrics-apiv2.lua").await;
    assert!(elastic["conf"]["max_buffer_size"] == 1000, "{elastic}");
    assert_eq!(elastic["conf"]["elastic_password"], "elastic-password-2410");
    let output = service
        .get_json("/api/v1/outputs/servicenow-em-events")
        .await;
    assert_eq!(
        output["filters"]["category"],
        serde_json::json!(["neb", "bam"])
    );
    service.terminate().await;

    // With the setting the note asks for, there is no note and the scripts
    // are told what Centreon Broker told them.
    let setup = Setup::new(
        "centreon-24.10/central-broker.json",
        "bbdo_version = \"3.0.1\"\n",
    );
    let (ok, out) = setup.import();
    assert!(ok, "{out}");
    assert_eq!(lines(&out, "created: ").len(), 2, "{out}");
    assert!(lines(&out, "note: ").is_empty(), "{out}");
    let service = Process::serve_with_config(setup.dir.path(), &setup.toml(), &[]).await;
    let snow = setup.conf_of("servicenow-em-events-apiv2.lua").await;
    assert_eq!(snow["bbdo"], "3.0.1");
    service.terminate().await;
}

#[tokio::test]
async fn a_central_broker_json_edited_by_hand() {
    let setup = Setup::new(
        "centreon-24.10/central-broker-edited.json",
        "bbdo_version = \"3.0.1\"\n",
    );
    let (ok, out) = setup.import();
    assert!(ok, "{out}");
    assert_eq!(
        lines(&out, "created: "),
        ["kafka-events", "pagerduty-events"],
        "{out}"
    );
    assert_eq!(
        lines(&out, "skipped: "),
        [
            "central-broker-master-unified-sql: type `unified_sql` is not a Lua output",
            "pagerduty-events: parameter send_ack: type `boolean` is not string, number or password (Centreon drops it too)",
            // Centreon Broker 25.x decrypts with a key of its own host.
            "opsgenie-events: parameters.app_api_token: lua: unable to decrypt app_api_token, no encryption key file available",
        ],
        "{out}"
    );
    let notes = lines(&out, "note: ");
    let expected = [
        "kafka-events: failover: not taken: brokerstream keeps",
        "kafka-events: retry_interval: not taken: brokerstream retries",
        "pagerduty-events: filters: `neb:servicestatus` dropped (category `neb` has no event named `servicestatus`): Centreon ignores it too",
        "pagerduty-events: filters: `local` dropped: Centreon never gives `local` events to a Lua output",
    ];
    assert_eq!(notes.len(), expected.len(), "{out}");
    for (note, want) in notes.iter().zip(expected) {
        assert!(note.starts_with(want), "{note}");
    }
    assert!(!out.contains("pd-key-2410"), "{out}");

    let service = Process::serve_with_config(setup.dir.path(), &setup.toml(), &[]).await;
    // One object for `lua_parameter` is one parameter.
    let kafka = setup.conf_of("kafka-events-apiv2.lua").await;
    assert_eq!(kafka["conf"], serde_json::json!({"topic": "centreon"}));
    let pagerduty = setup.conf_of("pagerduty-events-apiv2.lua").await;
    assert_eq!(pagerduty["conf"]["pdy_routing_key"], "pd-key-2410");
    assert!(
        pagerduty["conf"]["max_buffer_age"].is_f64() && pagerduty["conf"]["max_buffer_age"] == 2.5,
        "{pagerduty}"
    );
    assert!(pagerduty["conf"].get("send_ack").is_none(), "{pagerduty}");
    let output = service.get_json("/api/v1/outputs/pagerduty-events").await;
    assert_eq!(
        output["filters"]["category"],
        serde_json::json!(["neb:ServiceStatus", "neb:HostStatus"])
    );
    // "all": no filter, every event.
    let output = service.get_json("/api/v1/outputs/kafka-events").await;
    assert_eq!(output["filters"]["category"], serde_json::json!([]));
    service.terminate().await;
}
