//! The real binary: flags, environment, configuration file, simulator, and
//! a clean stop on SIGTERM that flushes what the workers hold.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn sigterm_flushes_buffered_events_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let data = dir.path().join("data");
    // Flags for the address, the environment for the data directory.
    let p = Process::spawn(
        &["serve", "--http-addr", &addr, "--bbdo-addr", "none"],
        &[("BROKERSTREAM_DATA_DIR", data.to_str().unwrap())],
        port,
    );
    p.wait_ready().await;
    let path = dir.path().join("buffered.log");
    create_output(&p, &file_output("buffered", &path, &[])).await;
    let body: String = (1..=3)
        .map(|i| format!("{}\n", host_status(i, 0, "OK")))
        .collect();
    let response = p.post_events(body).await.unwrap();
    assert_eq!(response.status(), 200);
    // Buffered, not written: a day-long age and a huge size.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(std::fs::read_to_string(&path)
        .unwrap_or_default()
        .is_empty());

    let status = p.terminate().await;
    assert!(status.success(), "{status:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    assert!(data.join("brokerstream.db").exists());
}

#[tokio::test]
async fn configuration_file_and_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("brokerstream.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nhttp_addr = \"127.0.0.1:{port}\"\n\n[journal]\nfsync = \"interval\"\nfsync_interval_ms = 50\n\n[bbdo]\nlisten = []\n",
            dir.path().join("from-config").to_str().unwrap()
        ),
    )
    .unwrap();
    let p = Process::spawn(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--simulate",
            "2000",
        ],
        &[],
        port,
    );
    p.wait_ready().await;
    assert!(dir
        .path()
        .join("from-config")
        .join("brokerstream.db")
        .exists());
    let path = dir.path().join("sim.log");
    let mut output = file_output("sim", &path, &["storage:metric", "neb:service_status"]);
    output["parameters"][2]["value"] = json!("0.1");
    create_output(&p, &output).await;
    let lines = wait_lines(&path, 50).await;
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["_type"] == 196609 || e["_type"] == 65560),
        "filtered"
    );
    assert!(events
        .iter()
        .any(|e| e["_type"] == 196609 && e["value"].is_f64() && e["name"].is_string()));
    assert!(events
        .iter()
        .any(|e| e["_type"] == 65560 && e["perfdata"].as_str().is_some_and(|p| p.contains('='))));
    assert!(p.terminate().await.success());
}

#[tokio::test]
async fn a_bad_configuration_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "http_adr = \"127.0.0.1:1\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invalid configuration file") && stderr.contains("http_adr"),
        "{stderr}"
    );
}

/// `check-config` reads a file as `serve` would and says what is wrong,
/// with its key, or that it is valid; it starts nothing.
#[test]
fn check_config_accepts_a_good_file_and_names_what_is_wrong_in_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let check = |toml: &str| {
        let config = dir.path().join("check.toml");
        std::fs::write(&config, toml).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
            .args(["check-config", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let data = dir.path().join("data");
    let (ok, text) = check(&format!(
        "data_dir = \"{}\"\nhttp_addr = \"127.0.0.1:18080\"\n[journal]\nfsync = \"interval\"\n[health]\nerror_ratio = 0.5\n",
        data.display()
    ));
    assert!(ok, "{text}");
    assert!(
        text.contains("valid") && text.contains("127.0.0.1:18080"),
        "{text}"
    );
    assert!(!data.exists(), "check-config created the data directory");
    for (toml, named) in [
        ("http_adr = \"127.0.0.1:1\"\n", "http_adr"),
        ("[journal]\nfsync = \"sometimes\"\n", "fsync"),
        ("[health]\nerror_ratio = -1\n", "health.error_ratio"),
        (
            "[http]\ntrusted_proxies = [\"not-an-address\"]\n",
            "http.trusted_proxies",
        ),
        ("[bbdo]\nack_limit = 0\n", "bbdo.ack_limit"),
        ("data_dir = [\n", "data_dir"),
    ] {
        let (ok, text) = check(toml);
        assert!(!ok, "{toml} passed: {text}");
        assert!(text.contains(named), "{toml}: {text}");
        assert!(text.contains("check.toml"), "{toml}: {text}");
    }
}

/// An unattended install gives the first admin's password in a file.
#[tokio::test]
async fn the_first_admin_password_may_come_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-password");
    // The test password, so that the harness's admin client works; the
    // variable is empty, so only the file can have given it.
    std::fs::write(&file, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let process = Process::serve_with_config(
        dir.path(),
        "",
        &[
            ("BROKERSTREAM_ADMIN_PASSWORD", ""),
            ("BROKERSTREAM_ADMIN_PASSWORD_FILE", file.to_str().unwrap()),
        ],
    )
    .await;
    let me = process
        .client
        .get(format!("{}/api/v1/me", process.base))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    drop(process);
    // A file that cannot be read stops the start with its name.
    let output = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args([
            "serve",
            "--data-dir",
            dir.path().join("other").to_str().unwrap(),
        ])
        .env(
            "BROKERSTREAM_ADMIN_PASSWORD_FILE",
            dir.path().join("missing"),
        )
        .env("BROKERSTREAM_BBDO_ADDR", "none")
        .env("BROKERSTREAM_HTTP_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("BROKERSTREAM_ADMIN_PASSWORD_FILE") && stderr.contains("missing"),
        "{stderr}"
    );
}

/// `brokerstream --help` lists what an operator runs; the benchmark's
/// tools are another binary (`brokerstream-bench`, in bench/).
#[test]
fn the_help_lists_only_operator_commands() {
    let output = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "serve",
            "run-script",
            "import",
            "journal",
            "check-config",
            "backup",
            "restore",
            "help"
        ],
        "{help}"
    );
}
