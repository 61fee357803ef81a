//! `systemctl reload` (SIGHUP): the configuration file read again while
//! every connection stays up.
//!
//! Only what can change under running listeners and workers is applied:
//! the log filter (`log_level`) and the `[health]` thresholds. Everything
//! else is bound into what runs (listen addresses and their TLS, the data
//! directory, the journal, limits and timeouts handed to each connection,
//! the Lua runtime of each worker): a change there is logged as needing a
//! restart, and the running value is kept, so that each reload says it
//! again until the restart.

use crate::app::App;
use crate::config::{Config, Overrides};

/// Sets the service's log filter; `Err` with why when it cannot.
pub type SetLogFilter = dyn Fn(&str) -> Result<(), String> + Send + Sync;

/// The log filter in effect: `BROKERSTREAM_LOG` wins over the file, as
/// the environment does over every other setting.
pub fn log_filter(config: &Config) -> String {
    std::env::var("BROKERSTREAM_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| config.log_level.clone())
        .unwrap_or_else(|| "info".to_owned())
}

/// The settings of `new` that differ from `running` and that a reload does
/// not apply, by their key in the file.
pub fn needs_restart(running: &Config, new: &Config) -> Vec<&'static str> {
    // Compared through `Debug`: every part of the configuration has it,
    // and a difference in any field is a difference in its text.
    let text = |value: &dyn std::fmt::Debug| format!("{value:?}");
    let pairs: [(&'static str, String, String); 10] = [
        ("data_dir", text(&running.data_dir), text(&new.data_dir)),
        ("http_addr", text(&running.http_addr), text(&new.http_addr)),
        ("simulate", text(&running.simulate), text(&new.simulate)),
        (
            "shutdown_timeout_secs",
            text(&running.shutdown_timeout_secs),
            text(&new.shutdown_timeout_secs),
        ),
        ("[journal]", text(&running.journal), text(&new.journal)),
        ("[lua]", text(&running.lua), text(&new.lua)),
        ("[bbdo]", text(&running.bbdo), text(&new.bbdo)),
        ("[auth]", text(&running.auth), text(&new.auth)),
        ("[limits]", text(&running.limits), text(&new.limits)),
        ("[http]", text(&running.http), text(&new.http)),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, ..)| name)
        .collect()
}

/// Reads the configuration again and applies what can be; returns the
/// configuration now in effect. A file that does not load changes
/// nothing, and the error (with its key) is logged.
pub async fn reload(
    app: &App,
    running: Config,
    overrides: Overrides,
    set_log_filter: &SetLogFilter,
) -> Config {
    let Some(path) = overrides.config_file.clone() else {
        tracing::info!("reload: no configuration file (--config) to read again; nothing changed");
        return running;
    };
    let new = match Config::load(overrides).and_then(|c| c.lua_settings().map(|_| c)) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!(
                "reload: {}: {e:#}; the running configuration is kept",
                path.display()
            );
            return running;
        }
    };
    let mut applied = Vec::new();
    let mut effective = running.clone();
    if log_filter(&new) != log_filter(&running) {
        match set_log_filter(&log_filter(&new)) {
            Ok(()) => {
                applied.push("log_level");
                effective.log_level = new.log_level.clone();
            }
            Err(e) => tracing::error!("reload: log_level: {e}; the running filter is kept"),
        }
    } else {
        effective.log_level = new.log_level.clone();
    }
    if new.health != running.health {
        app.context.supervisor.set_health(new.health.clone()).await;
        effective.health = new.health.clone();
        applied.push("[health]");
    }
    let restart = needs_restart(&running, &new);
    if !restart.is_empty() {
        tracing::warn!(
            "reload: {}: changed, but taking effect only at a restart (systemctl restart \
             brokerstream): {}",
            path.display(),
            restart.join(", ")
        );
    }
    if applied.is_empty() {
        tracing::info!("reload: {}: nothing to apply", path.display());
    } else {
        tracing::info!("reload: {}: applied {}", path.display(), applied.join(", "));
    }
    effective
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_but_the_reloadable_ones_needs_a_restart() {
        let running = Config::default();
        let mut new = Config {
            log_level: Some("debug".into()),
            ..Config::default()
        };
        new.health.error_ratio = 0.9;
        assert!(needs_restart(&running, &new).is_empty());
        new.http_addr = "127.0.0.1:1".parse().unwrap();
        new.limits.max_outputs = 3;
        new.bbdo.max_connections = 2;
        assert_eq!(
            needs_restart(&running, &new),
            ["http_addr", "[bbdo]", "[limits]"]
        );
    }
}
