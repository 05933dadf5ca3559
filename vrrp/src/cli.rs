//! The command line: `vrrp --config F` runs the daemon; `vrrp --check --config F [--config G]`
//! validates; `vrrp status [--config F | --runtime-dir D]` prints what a running daemon
//! reports. `main` only parses and sets up logging; each command here returns its exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;
use crate::daemon::{self, status, DaemonError};

#[derive(Parser, Debug)]
#[command(
    name = "vrrp",
    version,
    about = "VRRP v2/v3 daemon (keepalived-compatible)"
)]
pub struct Cli {
    /// vrrp.toml (several with --check: lints across the routers' files).
    #[arg(long = "config", short = 'f', value_name = "FILE")]
    pub config: Vec<PathBuf>,
    /// Validate the config(s) and print errors (file:line:col) and warnings; do not run.
    #[arg(long)]
    pub check: bool,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Print each instance's state, priority, master address and VIPs.
    Status {
        /// Read runtime_dir from this config.
        #[arg(
            long = "config",
            short = 'f',
            value_name = "FILE",
            conflicts_with = "runtime_dir"
        )]
        config: Option<PathBuf>,
        /// The daemon's runtime directory (default /run/vrrp).
        #[arg(long)]
        runtime_dir: Option<PathBuf>,
        /// Print the status as JSON (for scripts and monitoring).
        #[arg(long)]
        json: bool,
    },
    /// Convert a keepalived.conf to vrrp.toml; the report of what is not carried over goes to
    /// stderr. Exit status: 0 all mapped, 3 mapped with reported losses, 1 unreadable input.
    Import {
        keepalived_conf: PathBuf,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> ExitCode {
    match cli.cmd {
        Some(Cmd::Status {
            config,
            runtime_dir,
            json,
        }) => status_command(config, runtime_dir, json),
        Some(Cmd::Import {
            keepalived_conf,
            output,
        }) => {
            let result =
                crate::import::keepalived(&keepalived_conf, &conf::block::FsFiles::default());
            conf::import::finish_cli("vrrp", result, output.as_deref())
        }
        None if cli.check => check_command(&cli.config),
        None => daemon_command(&cli.config),
    }
}

fn status_command(config: Option<PathBuf>, runtime_dir: Option<PathBuf>, json: bool) -> ExitCode {
    let dir = match (config, runtime_dir) {
        (_, Some(d)) => d,
        (Some(f), None) => match config::load(&f) {
            Ok(c) => c.runtime_dir,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        (None, None) => PathBuf::from("/run/vrrp"),
    };
    match status_text(&dir, json) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vrrp status: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_command(paths: &[PathBuf]) -> ExitCode {
    if paths.is_empty() {
        eprintln!("vrrp --check: give at least one --config FILE");
        return ExitCode::from(2);
    }
    let (text, failed) = check(paths);
    print!("{text}");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn daemon_command(paths: &[PathBuf]) -> ExitCode {
    let [config] = paths else {
        eprintln!("vrrp: give exactly one --config FILE to run");
        return ExitCode::from(2);
    };
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `vrrp --check`: errors of every file, then lints (across files when several are given).
/// Returns the text to print and whether any file had errors.
pub fn check(paths: &[PathBuf]) -> (String, bool) {
    let mut out = String::new();
    let mut cfgs = Vec::new();
    let mut failed = false;
    for p in paths {
        match config::load(p) {
            Ok(c) => cfgs.push(c),
            Err(e) => {
                failed = true;
                out.push_str(&format!("{e}\n"));
            }
        }
    }
    let warnings = if cfgs.len() > 1 {
        config::lint_pair(&cfgs)
    } else {
        cfgs.iter().flat_map(config::lint).collect()
    };
    for w in &warnings {
        out.push_str(&format!("{w}\n"));
    }
    if !failed {
        out.push_str(&format!(
            "{} OK ({} warning{})\n",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            warnings.len(),
            if warnings.len() == 1 { "" } else { "s" }
        ));
    }
    (out, failed)
}

/// `vrrp status`: the status file of `runtime_dir`, rendered for a person or as JSON (with a
/// `running` field, and the peers' advert ages computed now).
pub fn status_text(runtime_dir: &Path, json: bool) -> Result<String, DaemonError> {
    let mut st = status::read(runtime_dir).map_err(|source| DaemonError::Io {
        what: format!("read {}", status::status_path(runtime_dir).display()),
        source,
    })?;
    let alive = status::is_vrrp_alive(st.pid);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    if !json {
        return Ok(status::render(&st, alive, now_ms));
    }
    for p in st.instance.iter_mut().flat_map(|i| i.peers.iter_mut()) {
        p.age_ms = now_ms.saturating_sub(p.last_advert_ms);
    }
    let mut v = serde_json::to_value(&st).map_err(|e| DaemonError::Io {
        what: "render JSON".into(),
        source: std::io::Error::other(e),
    })?;
    if let Some(o) = v.as_object_mut() {
        o.insert("running".into(), serde_json::Value::Bool(alive));
    }
    Ok(format!("{v:#}\n"))
}
