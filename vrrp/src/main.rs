//! `vrrp --config F` runs the daemon; `vrrp --check --config F [--config G]` validates;
//! `vrrp status [--config F | --runtime-dir D]` prints what a running daemon reports.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "vrrp",
    version,
    about = "VRRP v2/v3 daemon (keepalived-compatible)"
)]
struct Cli {
    /// vrrp.toml (several with --check: lints across the routers' files).
    #[arg(long = "config", short = 'f', value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Validate the config(s) and print errors (file:line:col) and warnings; do not run.
    #[arg(long)]
    check: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    conf::init_tracing();
    match cli.cmd {
        Some(Cmd::Import {
            keepalived_conf,
            output,
        }) => {
            let result =
                vrrp::import::keepalived(&keepalived_conf, &conf::block::FsFiles::default());
            conf::import::finish_cli("vrrp", result, output.as_deref())
        }
        Some(Cmd::Status {
            config,
            runtime_dir,
        }) => {
            let dir = match (config, runtime_dir) {
                (_, Some(d)) => d,
                (Some(f), None) => match vrrp::config::load(&f) {
                    Ok(c) => c.runtime_dir,
                    Err(e) => {
                        eprintln!("{e}");
                        return ExitCode::FAILURE;
                    }
                },
                (None, None) => PathBuf::from("/run/vrrp"),
            };
            match vrrp::daemon::status_text(&dir) {
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
        None if cli.check => {
            if cli.config.is_empty() {
                eprintln!("vrrp --check: give at least one --config FILE");
                return ExitCode::from(2);
            }
            let (text, failed) = vrrp::daemon::check(&cli.config);
            print!("{text}");
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        None => {
            let [config] = cli.config.as_slice() else {
                eprintln!("vrrp: give exactly one --config FILE to run");
                return ExitCode::from(2);
            };
            match vrrp::daemon::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
