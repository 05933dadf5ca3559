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

/// Single-file lints.
pub fn lint(cfg: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
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
