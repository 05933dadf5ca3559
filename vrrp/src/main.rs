//! `vrrp`: see `vrrp --help`; the commands live in `vrrp::cli`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = vrrp::cli::Cli::parse();
    conf::init_tracing();
    vrrp::cli::run(cli)
}
