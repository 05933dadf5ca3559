//! `proxy ctl`: the command line for the control API. It reads the proxy's own config to find
//! the admin listener and the token file, so an operator types only what changes:
//!
//! ```text
//! proxy ctl --config /etc/proxy/proxy.toml drain ProxyServer 172.16.249.201:80
//! proxy ctl --config /etc/proxy/proxy.toml ready ProxyServer 172.16.249.201:80 --weight 2
//! proxy ctl --config /etc/proxy/proxy.toml show
//! ```

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config;
use crate::control::token;

/// How long ctl waits for the admin listener (it answers within its own 2 s deadline).
const TIMEOUT: Duration = Duration::from_secs(5);

/// `proxy ctl [--config F] ACTION`.
#[derive(clap::Args, Debug)]
pub struct Ctl {
    /// The proxy's configuration (for the admin address and admin_token_file).
    #[arg(short, long, default_value = "/etc/proxy/proxy.toml")]
    config: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// No new requests to the server; requests in flight finish.
    Drain(Target),
    /// Back in service (after drain or maint), with slow start if configured.
    Ready(Target),
    /// Out of service now.
    Maint(Target),
    /// Every upstream and server: state, weights, health, connections, requests.
    Show {
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct Target {
    upstream: String,
    /// The server's address as configured, or ip:port.
    address: String,
    /// Also set the weight.
    #[arg(long)]
    weight: Option<u64>,
}

impl Ctl {
    pub fn run(&self) -> ExitCode {
        match self.execute() {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("proxy ctl: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn execute(&self) -> Result<String, String> {
        let config = config::load(&self.config).map_err(|e| e.to_string())?;
        let admin = config.admin.ok_or_else(|| {
            format!(
                "{} has no admin listener (add admin = \"127.0.0.1:9900\")",
                self.config.display()
            )
        })?;
        let admin = reachable(admin);
        let (state, t) = match &self.action {
            Action::Show { json } => {
                let (status, body) = request(admin, "GET", "/api/upstreams", None, "")?;
                if status != 200 {
                    return Err(format!("admin {admin} answered {status}: {body}"));
                }
                return if *json { Ok(body) } else { table(&body) };
            }
            Action::Drain(t) => ("drain", t),
            Action::Ready(t) => ("ready", t),
            Action::Maint(t) => ("maint", t),
        };
        let file = config.admin_token_file.as_ref().ok_or_else(|| {
            format!(
                "{} has no admin_token_file: run-time changes are disabled",
                self.config.display()
            )
        })?;
        let token = token::read(file)?;
        let mut body = serde_json::json!({ "state": state });
        if let Some(w) = t.weight {
            body["weight"] = w.into();
        }
        let path = format!("/api/upstreams/{}/servers/{}", t.upstream, t.address);
        let (status, answer) = request(admin, "POST", &path, Some(&token), &body.to_string())?;
        let js: serde_json::Value = serde_json::from_str(&answer).unwrap_or_default();
        if status != 200 {
            let why = js["error"].as_str().unwrap_or(answer.trim());
            return Err(format!("{status}: {why}"));
        }
        Ok(format!(
            "{} {}: {} (weight {})\n",
            t.upstream,
            t.address,
            js["state"].as_str().unwrap_or(state),
            js["weight"]
        ))
    }
}

/// A wildcard admin address is reached through loopback.
fn reachable(admin: SocketAddr) -> SocketAddr {
    match admin.ip() {
        IpAddr::V4(a) if a.is_unspecified() => {
            SocketAddr::from((Ipv4Addr::LOCALHOST, admin.port()))
        }
        IpAddr::V6(a) if a.is_unspecified() => {
            SocketAddr::from((Ipv6Addr::LOCALHOST, admin.port()))
        }
        _ => admin,
    }
}

/// One HTTP/1.1 request (Connection: close); the status and the body.
fn request(
    admin: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("admin listener {admin}: {e}");
    let mut s = TcpStream::connect_timeout(&admin, TIMEOUT).map_err(fail)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(fail)?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {admin}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(fail)?;
    let mut raw = Vec::new();
    s.take(16 << 20).read_to_end(&mut raw).map_err(fail)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("admin listener {admin}: not an HTTP response"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("admin listener {admin}: not an HTTP response"))?;
    Ok((status, body.to_string()))
}

/// `show` as a table.
fn table(json: &str) -> Result<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("bad answer from the admin API: {e}"))?;
    let mut out = format!(
        "{:<16} {:<24} {:<10} {:<6} {:<9} {:>6} {:>6} {:>6} {:>9} {:>6} {:>5}  {}\n",
        "UPSTREAM",
        "SERVER",
        "STATE",
        "ADMIN",
        "HEALTH",
        "WEIGHT",
        "EFF",
        "ACTIVE",
        "REQUESTS",
        "5XX",
        "FAILS",
        "LAST CHECK"
    );
    for u in v["upstreams"].as_array().into_iter().flatten() {
        for s in u["servers"].as_array().into_iter().flatten() {
            let check = match &s["last_check"] {
                serde_json::Value::Null => "-".to_string(),
                c => format!(
                    "{} in {:.1} ms",
                    c["result"].as_str().unwrap_or("?"),
                    c["latency_ms"].as_f64().unwrap_or(0.0)
                ),
            };
            let str_of = |k: &str| s[k].as_str().unwrap_or("?").to_string();
            out.push_str(&format!(
                "{:<16} {:<24} {:<10} {:<6} {:<9} {:>6} {:>6} {:>6} {:>9} {:>6} {:>5}  {}\n",
                u["name"].as_str().unwrap_or("?"),
                str_of("address"),
                str_of("state"),
                str_of("admin_state"),
                str_of("health"),
                s["weight"],
                s["effective_weight"],
                s["active"],
                s["requests"],
                s["responses_5xx"],
                s["fails"],
                check
            ));
        }
    }
    Ok(out)
}
