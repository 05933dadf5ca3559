//! `proxy import nginx.conf`: nginx's configuration carried over to proxy.toml.
//!
//! The file is read with `conf::block` (includes expanded), walked into [`Model`] (what
//! proxy.toml can say, plus the comments to leave in it), and written out by [`emit`]. What the
//! proxy cannot do is reported one line per directive (`file:line: directive "x" is not
//! supported: what happens instead`) and marked with a comment where it would have gone.
//! Directives that change nothing for a reverse proxy (`sendfile`, `user`, `events`, `types`,
//! ...) are left as comments only: they are not losses.

mod emit;
mod http;
mod known;
mod location;
mod upstream;
mod values;

use std::path::Path;

use conf::block::{self, Dialect, Files};
use conf::import::{Imported, Loss};
use conf::ConfigError;

/// `proxy import NGINX_CONF [-o OUT]`, the subcommand next to `proxy --config F`.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Convert an nginx.conf to proxy.toml; the report of what is not carried over goes to
    /// stderr. Exit status: 0 all mapped, 3 mapped with reported losses, 1 unreadable input.
    Import {
        nginx_conf: std::path::PathBuf,
        /// Output file (default: stdout).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
}

impl Command {
    pub fn run(&self) -> std::process::ExitCode {
        let Command::Import { nginx_conf, output } = self;
        let result = nginx(nginx_conf, &block::FsFiles::default());
        conf::import::finish_cli("proxy", result, output.as_deref())
    }
}

/// What the generated proxy.toml holds.
#[derive(Debug, Default)]
pub(crate) struct Model {
    pub workers: Option<String>,
    /// nginx's `events { worker_connections }`, the same per-worker cap.
    pub worker_connections: Option<usize>,
    pub access_log: Option<String>,
    pub upstreams: Vec<Upstream>,
    pub servers: Vec<Server>,
    /// Comment lines for the top of the file.
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Upstream {
    pub name: String,
    pub peers: Vec<Peer>,
    pub balance: Option<&'static str>,
    pub keepalive: Option<u64>,
    pub keepalive_timeout: Option<String>,
    /// nginx Plus `queue N [timeout=T]`: the count and the timeout if given.
    pub queue: Option<(u64, Option<String>)>,
    /// connect, read, send timeouts with where they were set.
    pub timeouts: [Option<(String, String)>; 3],
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Peer {
    pub address: String,
    /// TOML `key = value` pairs in order (weight, max_fails, ...).
    pub fields: Vec<(&'static str, String)>,
}

/// One `listen`: the address, whether it is the default_server, and where it was written.
#[derive(Debug, Default)]
pub(crate) struct Listen {
    pub address: String,
    pub default: bool,
    pub at: String,
}

#[derive(Debug, Default)]
pub(crate) struct Server {
    pub listen: Vec<Listen>,
    /// TOML `key = value` pairs in order.
    pub fields: Vec<(&'static str, String)>,
    pub locations: Vec<Location>,
    pub notes: Vec<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Location {
    pub path: String,
    pub proxy_pass: String,
    pub notes: Vec<String>,
}

/// nginx's own check of block shapes, for the directives the importer reads: `listen 80` with a
/// missing `;` swallows the next line's `location / {` as its block, and nginx reports it.
fn check_blocks(ds: &[conf::block::Directive], parent: &str) -> Result<(), ConfigError> {
    const BLOCKS: &[&str] = &["http", "events", "location", "upstream"];
    const SIMPLE: &[&str] = &[
        "listen",
        "proxy_pass",
        "server_name",
        "worker_processes",
        "access_log",
        "log_format",
        "error_page",
        "keepalive",
        "keepalive_timeout",
        "include",
        "root",
        "index",
        "proxy_set_header",
        "client_max_body_size",
    ];
    for d in ds {
        let wants_block =
            BLOCKS.contains(&d.name.as_str()) || (d.name == "server" && parent != "upstream");
        let takes_none =
            SIMPLE.contains(&d.name.as_str()) || (d.name == "server" && parent == "upstream");
        let message = match &d.block {
            Some(_) if takes_none => format!("directive \"{}\" is not terminated by \";\"", d.name),
            None if wants_block => format!("directive \"{}\" has no opening \"{{\"", d.name),
            _ => {
                check_blocks(d.children(), &d.name)?;
                continue;
            }
        };
        return Err(ConfigError {
            file: d.file.to_path_buf(),
            line: d.line,
            col: d.col,
            message,
        });
    }
    Ok(())
}

/// Imports the nginx configuration at `path` (and what it includes, read through `files`).
/// `Err` when the input cannot be read or parsed, or holds nothing a proxy could serve.
pub fn nginx(path: &Path, files: &dyn Files) -> Result<Imported, ConfigError> {
    let parsed = block::parse_file(path, Dialect::Nginx, files)?;
    check_blocks(&parsed.directives, "")?;
    let mut losses: Vec<Loss> = parsed.notes.iter().map(Loss::from_note).collect();
    let mut model = Model {
        notes: losses.iter().map(conf::import::dropped).collect(),
        ..Model::default()
    };
    http::walk_main(&parsed.directives, &mut model, &mut losses);
    conf::import::sort_losses(&mut losses, &parsed.files);
    if model.servers.is_empty() {
        let why =
            "no server proxies requests (no server block with a location that has proxy_pass)";
        return Err(conf::import::nothing_to_import(path, why, &losses));
    }
    // Report in file order: includes make walk order and file order differ.
    let toml = emit::toml(&mut model, path);
    Ok(Imported { toml, losses })
}
