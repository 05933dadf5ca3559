//! `lab bench --workers N --pin-workers --max-conns N`: our proxy's settings for one bench run.
//!
//! On this path the proxy is not alone on its cores (wrk and both backends share them), which is
//! where `workers = "auto"` stops being the obvious choice, and where capping each backend's
//! concurrent requests (`max_conns` with a `queue`) trades throughput for tail latency;
//! measuring them needs the balancers' proxy.toml changed and restored around the run. The file is rewritten on both balancers, the
//! proxy restarted, and the original put back (and the proxy restarted again) when the guard
//! drops, also when the run fails half-way.

use crate::error::{LabError, Result};
use crate::host::{HostHandle, Service};
use crate::lab::Running;

/// Where provision puts the proxy's configuration on a balancer.
const PROXY_TOML: &str = "/etc/proxy/proxy.toml";

/// Worker settings to run the bench with; `None` keeps what the file says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workers {
    /// "auto" or a number, as proxy.toml's `workers`.
    pub workers: Option<String>,
    pub pin: bool,
    /// `max_conns` on every upstream server, with a queue the clients can never fill.
    pub max_conns: Option<u32>,
}

/// Per worker: far more than a bench's clients, so no request is turned away.
const QUEUE: u32 = 10_000;

impl Workers {
    pub fn is_default(&self) -> bool {
        self.workers.is_none() && !self.pin && self.max_conns.is_none()
    }

    /// The report's note on what was changed, if anything was.
    pub fn note(&self) -> Option<String> {
        (!self.is_default()).then(|| self.describe())
    }

    /// The keys as they go into proxy.toml, for the report's notes.
    pub fn describe(&self) -> String {
        let mut keys = Vec::new();
        if let Some(w) = &self.workers {
            keys.push(format!("workers = {}", value(w)));
        }
        if self.pin {
            keys.push("pin_workers = true".into());
        }
        if let Some(n) = self.max_conns {
            keys.push(format!("max_conns = {n} on every server, queue = {QUEUE}"));
        }
        format!(
            "our proxy ran with {} (set for this run by lab bench)",
            keys.join(", ")
        )
    }
}

/// `"auto"` stays a string, a number stays a number.
fn value(workers: &str) -> String {
    if workers.parse::<u32>().is_ok() {
        workers.to_string()
    } else {
        format!("{workers:?}")
    }
}

/// proxy.toml with the top-level `workers` / `pin_workers` keys replaced (or added before the
/// first table when absent), and with `max_conns` added to each one-line server entry
/// (`{ address = ... }`, as provision renders them) and a `queue` to each upstream. Only whole
/// lines are touched; everything else is kept.
pub fn rewrite(toml: &str, w: &Workers) -> String {
    let toml = match w.max_conns {
        Some(n) => cap_servers(toml, n),
        None => toml.to_string(),
    };
    let mut wanted: Vec<(&str, String)> = Vec::new();
    if let Some(v) = &w.workers {
        wanted.push(("workers", value(v)));
    }
    if w.pin {
        wanted.push(("pin_workers", "true".into()));
    }
    let mut out = Vec::new();
    let mut in_table = false;
    let mut placed = vec![false; wanted.len()];
    for line in toml.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') && !in_table {
            in_table = true;
            for (i, (key, val)) in wanted.iter().enumerate() {
                if !placed[i] {
                    out.push(format!("{key} = {val}"));
                    placed[i] = true;
                }
            }
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        match wanted.iter().position(|(k, _)| !in_table && *k == key) {
            Some(i) => {
                out.push(format!("{key} = {}", wanted[i].1));
                placed[i] = true;
            }
            None => out.push(line.to_string()),
        }
    }
    for (i, (key, val)) in wanted.iter().enumerate() {
        if !placed[i] {
            out.push(format!("{key} = {val}"));
        }
    }
    out.join("\n") + "\n"
}

fn cap_servers(toml: &str, n: u32) -> String {
    let mut out = Vec::new();
    for line in toml.lines() {
        let trimmed = line.trim_start();
        match (trimmed.starts_with("{ address ="), line.rfind(" }")) {
            (true, Some(end)) => {
                out.push(format!("{}, max_conns = {n}{}", &line[..end], &line[end..]))
            }
            _ => out.push(line.to_string()),
        }
        if trimmed.starts_with("[upstream.") {
            out.push(format!("queue = {QUEUE}"));
        }
    }
    out.join("\n") + "\n"
}

/// The original proxy.toml of each balancer, put back on drop.
pub struct Applied<'a> {
    lab: &'a Running,
    originals: Vec<(HostHandle, String)>,
}

/// Rewrites every balancer's proxy.toml and restarts its proxy.
pub fn apply<'a>(lab: &'a Running, w: &Workers) -> Result<Applied<'a>> {
    let mut applied = Applied {
        lab,
        originals: Vec::new(),
    };
    for h in lab
        .hosts()
        .into_iter()
        .filter(|h| h.host.priority.is_some())
    {
        let original = h
            .read_file(PROXY_TOML)
            .ok_or_else(|| LabError::Other(format!("{}: cannot read {PROXY_TOML}", h.host.name)))?;
        h.write_file(PROXY_TOML, &rewrite(&original, w), 0o644)?;
        applied.originals.push((h.clone(), original));
        restart(lab, &h)?;
    }
    Ok(applied)
}

fn restart(lab: &Running, h: &HostHandle) -> Result<()> {
    h.stop(Service::Proxy);
    h.start(Service::Proxy, &lab.context()).map(|_| ())
}

impl Drop for Applied<'_> {
    fn drop(&mut self) {
        for (h, original) in &self.originals {
            let put_back = h.write_file(PROXY_TOML, original, 0o644);
            if let Err(e) = put_back.and_then(|()| restart(self.lab, h)) {
                eprintln!(
                    "{}: could not restore {PROXY_TOML} and restart the proxy: {e}",
                    h.host.name
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYED: &str = "# comment\nworkers = \"auto\"\naccess_log = \"/var/log/proxy/access.log\"\n\n[upstream.ProxyServer]\nworkers = 9\n";

    #[test]
    fn replaces_top_level_keys_and_leaves_tables_alone() {
        let w = Workers {
            workers: Some("1".into()),
            pin: true,
            max_conns: None,
        };
        let out = rewrite(DEPLOYED, &w);
        assert_eq!(
            out,
            "# comment\nworkers = 1\naccess_log = \"/var/log/proxy/access.log\"\n\npin_workers = true\n[upstream.ProxyServer]\nworkers = 9\n"
        );
        let parsed: toml::Table = out.parse().unwrap();
        assert_eq!(parsed["workers"].as_integer(), Some(1));
        assert_eq!(parsed["pin_workers"].as_bool(), Some(true));
    }

    #[test]
    fn max_conns_caps_every_rendered_server_and_queues_the_rest() {
        let w = Workers {
            max_conns: Some(8),
            ..Workers::default()
        };
        let rendered = "workers = \"auto\"\n[upstream.ProxyServer]\nservers = [\n  { address = \"172.16.249.201:80\", weight = 1 },  # server3\n  { address = \"172.16.249.202:80\", weight = 1 },  # server4\n]\nbalance = \"round_robin\"\n";
        let out = rewrite(rendered, &w);
        assert_eq!(
            out.matches(", max_conns = 8 },  # server").count(),
            2,
            "{out}"
        );
        let parsed: toml::Table = out.parse().unwrap();
        let up = &parsed["upstream"]["ProxyServer"];
        assert_eq!(up["queue"].as_integer(), Some(i64::from(QUEUE)));
        for s in up["servers"].as_array().unwrap() {
            assert_eq!(s["max_conns"].as_integer(), Some(8));
        }
        assert!(!w.is_default());
        assert!(w.describe().contains("max_conns = 8 on every server"));
    }

    #[test]
    fn auto_stays_a_string_and_a_file_without_tables_gets_the_keys_at_the_end() {
        let w = Workers {
            workers: Some("auto".into()),
            pin: false,
            max_conns: None,
        };
        assert_eq!(rewrite("workers = 2\n", &w), "workers = \"auto\"\n");
        assert_eq!(
            rewrite("splice = true\n", &w),
            "splice = true\nworkers = \"auto\"\n"
        );
        assert!(Workers::default().is_default());
        assert_eq!(
            w.describe(),
            "our proxy ran with workers = \"auto\" (set for this run by lab bench)"
        );
    }
}
