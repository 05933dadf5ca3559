//! Lints: configs that are valid but will not do what their author meant.
//!
//! Single file ([`lint`]): PASS auth with version 3 (ignored, as keepalived), advert_int below
//! what the version can send, tracking on an address owner (priority 255).
//! Several files, one per router ([`lint_pair`]): the same checks, plus for each virtual router
//! (same VRID and address family) seen in two or more files: a track script whose failure cannot
//! move mastership (keepalived's classic weight -20 on 150 vs 100), and differences that make the peers
//! drop each other's adverts (VIP list, version, auth, v2 interval) = split brain.

use std::time::Duration;

use super::{Config, Warning};
use crate::wire::vrrp::{Auth, Version};

fn warn(cfg: &Config, line: usize, message: String) -> Warning {
    Warning {
        file: cfg.source.clone(),
        line,
        message,
    }
}

fn line(v: &[usize], i: usize) -> usize {
    v.get(i).copied().unwrap_or(0)
}

/// What vrrp.service's sandbox does to a script, by a word the command contains: the unit
/// runs the daemon (and so every track and notify script) as root but with only
/// CAP_NET_ADMIN and CAP_NET_RAW, NoNewPrivileges, a read-only file system except the runtime
/// directory (ProtectSystem=strict) and a private /tmp.
const SANDBOX: [(&str, &str); 5] = [
    ("sudo", "sudo cannot raise privileges under NoNewPrivileges=yes"),
    ("su ", "su cannot raise privileges under NoNewPrivileges=yes"),
    ("systemctl", "systemctl start/stop/restart from inside the unit may be refused (systemd can check for CAP_SYS_ADMIN, which the unit drops); prefer a check that only reads (the http probe, pidof) and let the proxy's own unit restart it (Restart=on-failure)"),
    ("killall", "killall/pkill with a real signal needs CAP_KILL for processes of other users (nginx workers), which the unit drops; `killall -0 nginx` still succeeds through the root-owned master"),
    ("pkill", "killall/pkill with a real signal needs CAP_KILL for processes of other users (nginx workers), which the unit drops; `pkill -0` still succeeds through the root-owned master"),
];

/// Warnings for commands that will not work inside vrrp.service's sandbox.
fn sandbox_warnings(cfg: &Config, out: &mut Vec<Warning>) {
    let mut commands: Vec<(String, usize, &str)> = Vec::new();
    for (i, s) in cfg.scripts.iter().enumerate() {
        if let super::Probe::Script(cmd) = &s.probe {
            commands.push((
                format!("vrrp_script {}", s.name),
                line(&cfg.lines.script_weight, i),
                cmd,
            ));
        }
    }
    for (i, inst) in cfg.instances.iter().enumerate() {
        let l = line(&cfg.lines.instance_priority, i);
        for (key, cmd) in [
            ("notify_master", &inst.notify_master),
            ("notify_backup", &inst.notify_backup),
            ("notify_fault", &inst.notify_fault),
            ("notify", &inst.notify),
        ] {
            if let Some(cmd) = cmd {
                commands.push((format!("vrrp_instance {} {key}", inst.name), l, cmd));
            }
        }
    }
    for (what, l, cmd) in commands {
        let padded = format!(" {cmd} ");
        for (word, why) in SANDBOX {
            let hit = padded.contains(&format!(" {}", word.trim_end()))
                && !(word == "killall" && padded.contains("killall -0 "))
                && !(word == "pkill" && padded.contains("pkill -0 "));
            if hit {
                out.push(warn(
                    cfg,
                    l,
                    format!("{what}: {cmd:?} runs inside vrrp.service's sandbox: {why}"),
                ));
            }
        }
        if let Some(path) = written_path(cmd) {
            if !path.starts_with(&*cfg.runtime_dir.to_string_lossy())
                && !path.starts_with("/tmp/")
                && path != "/dev/null"
            {
                out.push(warn(cfg, l, format!(
                    "{what}: {cmd:?} writes {path}, but vrrp.service makes the file system read-only (ProtectSystem=strict) except {} and a private /tmp",
                    cfg.runtime_dir.display()
                )));
            }
        }
    }
}

/// The file a shell command redirects its output to (`> FILE`, `>> FILE`), if any.
fn written_path(cmd: &str) -> Option<String> {
    let at = cmd.find('>')?;
    let rest = cmd.get(at..)?.trim_start_matches('>').trim_start();
    let path: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';' && *c != '&' && *c != '|')
        .collect();
    path.starts_with('/').then_some(path)
}

/// Single-file lints.
pub fn lint(cfg: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    sandbox_warnings(cfg, &mut out);
    if let Some(a) = cfg.anycast.as_ref().filter(|a| a.track_script.is_empty()) {
        out.push(warn(
            cfg,
            a.line,
            format!(
                "[anycast] has no track_script: the VIPs stay announced while vrrp runs, so a dead proxy keeps drawing its share of the traffic ({} addresses)",
                a.vips.len()
            ),
        ));
    }
    for (i, inst) in cfg.instances.iter().enumerate() {
        if inst.version == Version::V3 && inst.auth != Auth::None {
            out.push(warn(
                cfg,
                line(&cfg.lines.instance_auth, i),
                format!(
                    "vrrp_instance {}: authentication is ignored with version 3 (RFC 5798 has no auth), as keepalived does",
                    inst.name
                ),
            ));
        }
        let l = line(&cfg.lines.instance_advert_int, i);
        match inst.version {
            Version::V2 => {
                if inst.advert_interval < Duration::from_secs(1)
                    || inst.advert_interval.subsec_nanos() != 0
                {
                    out.push(warn(cfg, l, format!(
                        "vrrp_instance {}: advert_int {:?} cannot be sent by version 2 (whole seconds >= 1); use version = 3",
                        inst.name, inst.advert_interval
                    )));
                }
            }
            Version::V3 => {
                if inst.advert_interval < Duration::from_millis(10) {
                    out.push(warn(
                        cfg,
                        l,
                        format!(
                        "vrrp_instance {}: advert_int {:?} is below version 3's 0.01 s resolution",
                        inst.name, inst.advert_interval
                    ),
                    ));
                }
            }
        }
        if inst.priority == 255 && !inst.track_script.is_empty() {
            out.push(warn(cfg, line(&cfg.lines.instance_priority, i), format!(
                "vrrp_instance {}: priority 255 (address owner) with track_script: weights change the owner's priority, which keepalived does not do",
                inst.name
            )));
        }
    }
    out
}

/// Priority range of an instance as tracking can move it: (all scripts failing, all healthy).
/// Weight 0 scripts put the instance in Fault instead, so they do not count here.
fn priority_range(cfg: &Config, inst: &super::VrrpInstance) -> (i64, i64, Vec<(String, i32)>) {
    let base = i64::from(inst.priority);
    let mut low = base;
    let mut high = base;
    let mut negative = Vec::new();
    for &s in &inst.track_script {
        if let Some(script) = cfg.scripts.get(s) {
            if script.weight < 0 {
                low += i64::from(script.weight);
                negative.push((script.name.clone(), script.weight));
            } else {
                high += i64::from(script.weight);
            }
        }
    }
    // keepalived clamps the effective priority to 1..=254.
    (low.clamp(1, 254), high.clamp(1, 254), negative)
}

/// A negative weight that does move mastership, but slowly: explain why and what weight 0
/// does instead (the times from the peer's timers).
fn slow_handover(
    cfg: &Config,
    ii: usize,
    other_cfg: &Config,
    other: &super::VrrpInstance,
    my_low: i64,
    negative: &[(String, i32)],
) -> Warning {
    let inst = &cfg.instances[ii];
    let names: Vec<String> = negative
        .iter()
        .map(|(n, w)| format!("{n} (weight {w})"))
        .collect();
    let interval = other.advert_interval.as_secs_f64();
    let share = f64::from(256 - u32::from(other.priority)) / 256.0;
    let skew = match other.version {
        Version::V2 => share,
        Version::V3 => share * interval,
    };
    let down = 3.0 * interval + skew;
    warn(cfg, line(&cfg.lines.instance_priority, ii), format!(
        "vrrp_instance {}: when {} fail(s), priority {} -> {}, below {}'s {} in {}: the VIPs move, but only after the peer's Master_Down_Interval (3 x advert_int + Skew_Time = {down:.2} s), because a backup ignores lower-priority adverts and waits for the master to fall silent; with weight = 0 a failing check puts this router in FAULT instead: it sends a priority-0 advert and the peer takes over after Skew_Time ({skew:.2} s)",
        inst.name,
        names.join(", "),
        inst.priority,
        my_low,
        other.name,
        other.priority,
        other_cfg.source.display(),
    ))
}

/// Lints across the configs of the routers that share virtual routers (one file per router).
pub fn lint_pair(cfgs: &[Config]) -> Vec<Warning> {
    let mut out: Vec<Warning> = cfgs.iter().flat_map(lint).collect();
    for (ci, cfg) in cfgs.iter().enumerate() {
        for (ii, inst) in cfg.instances.iter().enumerate() {
            let fam = inst.vips.first().map(|(a, _)| a.is_ipv4());
            let (my_low, my_high, negative) = priority_range(cfg, inst);
            for (oi, other_cfg) in cfgs.iter().enumerate() {
                if oi == ci {
                    continue;
                }
                for other in &other_cfg.instances {
                    if other.vrid != inst.vrid
                        || other.vips.first().map(|(a, _)| a.is_ipv4()) != fam
                    {
                        continue;
                    }
                    let (_, peer_high, _) = priority_range(other_cfg, other);
                    // Only the intended master's failure matters, and only if it has weights.
                    if my_high > peer_high && !negative.is_empty() && my_low > peer_high {
                        let names: Vec<String> = negative
                            .iter()
                            .map(|(n, w)| format!("{n} (weight {w})"))
                            .collect();
                        out.push(warn(cfg, line(&cfg.lines.instance_priority, ii), format!(
                            "vrrp_instance {}: when {} fail(s), priority {} drops only to {}, still above {}'s {} in {}: the VIPs will not move; use a total weight of {} or lower",
                            inst.name,
                            names.join(", "),
                            inst.priority,
                            my_low,
                            other.name,
                            peer_high,
                            other_cfg.source.display(),
                            peer_high - i64::from(inst.priority) - 1,
                        )));
                    }
                    if my_high > peer_high && !negative.is_empty() && my_low < peer_high {
                        out.push(slow_handover(cfg, ii, other_cfg, other, my_low, &negative));
                    }
                    // Report mismatches once per pair (from the earlier file).
                    if oi < ci {
                        continue;
                    }
                    let mut mismatch = |what: String| {
                        out.push(warn(cfg, line(&cfg.lines.instance_priority, ii), format!(
                            "vrrp_instance {} and {} in {} (VRID {}): {what}; the routers drop each other's adverts and both become master",
                            inst.name, other.name, other_cfg.source.display(), inst.vrid
                        )));
                    };
                    let mut a: Vec<_> = inst.vips.iter().map(|(a, _)| *a).collect();
                    let mut b: Vec<_> = other.vips.iter().map(|(a, _)| *a).collect();
                    a.sort();
                    b.sort();
                    if a != b {
                        mismatch("virtual_ipaddress lists differ".to_string());
                    }
                    if inst.version != other.version {
                        mismatch(format!(
                            "versions differ ({:?} vs {:?})",
                            inst.version, other.version
                        ));
                    } else if inst.version == Version::V2 {
                        if inst.auth != other.auth {
                            mismatch("authentication differs".to_string());
                        }
                        if inst.advert_interval != other.advert_interval {
                            mismatch(
                                "advert_int differs (version 2 drops such adverts)".to_string(),
                            );
                        }
                    }
                }
            }
        }
    }
    out
}
