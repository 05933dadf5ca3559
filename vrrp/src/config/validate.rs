//! Raw layer -> validated [`Config`], collecting every error with its position.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawInstance, RawScript};
use super::{Config, ConfigErrors, Lines, Probe, TrackScript, VrrpInstance};
use crate::wire::vrrp::{Auth, ChecksumMode, Version};

/// keepalived's defaults.
const DEFAULT_PRIORITY: u8 = 100;
const DEFAULT_SCRIPT_INTERVAL: Duration = Duration::from_secs(1);
/// keepalived caps preempt_delay at 1000 s.
const MAX_PREEMPT_DELAY_S: f64 = 1000.0;
/// Script weights are limited to -253..=253 by keepalived.
const MAX_WEIGHT: i64 = 253;

/// Validation context: collects every error with its line:col and keeps going.
pub(super) struct Ctx<'a> {
    pub(super) errors: conf::Collector<'a>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.error(span, message);
    }

    pub(super) fn line(&self, span: Range<usize>) -> usize {
        self.errors.source.line(span.start)
    }

    /// Seconds as a Duration, within `min..=max`.
    fn seconds(&mut self, v: &Spanned<f64>, what: &str, min: f64, max: f64) -> Option<Duration> {
        let s = *v.get_ref();
        if !s.is_finite() || s < min || s > max {
            self.err(
                v.span(),
                format!("{what} must be between {min} and {max} seconds, got {s}"),
            );
            return None;
        }
        Duration::try_from_secs_f64(s).ok()
    }

    fn int_in<T: TryFrom<i64>>(
        &mut self,
        v: &Spanned<i64>,
        what: &str,
        min: i64,
        max: i64,
    ) -> Option<T> {
        let n = *v.get_ref();
        if n < min || n > max {
            self.err(v.span(), format!("{what} must be {min}..={max}, got {n}"));
            return None;
        }
        T::try_from(n).ok()
    }

    fn ip(&mut self, v: &Spanned<String>, what: &str) -> Option<IpAddr> {
        match v.get_ref().parse::<IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    v.span(),
                    format!("{what}: invalid IP address {:?}", v.get_ref()),
                );
                None
            }
        }
    }
}

pub(super) fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let mut cx = Ctx {
        errors: conf::Collector::new(path, text),
    };
    let (raw, shape_errors) = super::recover::parse_raw(text);
    for (span, message) in shape_errors {
        cx.err(span, message);
    }
    let Some(raw) = raw else {
        return Err(cx.errors.into_errors());
    };
    // A blanked-out key must not also be reported as missing.
    let had_shape_errors = cx.errors.has_errors();

    let (router_id, runtime_dir, metrics, realtime) = match &raw.global_defs {
        Some(g) => {
            let g = g.get_ref();
            let rid = g.router_id.as_ref().map(|s| s.get_ref().clone());
            let dir = match &g.runtime_dir {
                Some(d) if !d.get_ref().starts_with('/') => {
                    cx.err(d.span(), "runtime_dir must be an absolute path");
                    None
                }
                Some(d) => Some(PathBuf::from(d.get_ref())),
                None => None,
            };
            let metrics = g.metrics.as_ref().and_then(|m| {
                m.get_ref()
                    .parse::<std::net::SocketAddr>()
                    .map_err(|_| {
                        cx.err(
                            m.span(),
                            format!(
                                "metrics {:?}: expected ADDRESS:PORT, e.g. \"127.0.0.1:9901\"",
                                m.get_ref()
                            ),
                        )
                    })
                    .ok()
            });
            (rid, dir, metrics, g.realtime.unwrap_or(false))
        }
        None => (None, None, None, false),
    };

    // File order, not name order: sort by where each table starts.
    let mut scripts_raw: Vec<(&String, &Spanned<RawScript>)> = raw.vrrp_script.iter().collect();
    scripts_raw.sort_by_key(|(_, s)| s.span().start);
    let mut instances_raw: Vec<(&String, &Spanned<RawInstance>)> =
        raw.vrrp_instance.iter().collect();
    instances_raw.sort_by_key(|(_, s)| s.span().start);

    let mut lines = Lines::default();
    let mut scripts = Vec::new();
    for (name, s) in &scripts_raw {
        let line = s
            .get_ref()
            .weight
            .as_ref()
            .map_or_else(|| cx.line(s.span()), |w| cx.line(w.span()));
        if let Some(ts) = script(&mut cx, name, s) {
            scripts.push(ts);
            lines.script_weight.push(line);
        }
    }
    let script_names: HashMap<&str, usize> = scripts
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    // Names of scripts that exist but failed validation: do not report them again as unknown.
    let known: Vec<&str> = scripts_raw.iter().map(|(n, _)| n.as_str()).collect();

    let mut instances = Vec::new();
    let mut seen_vrid: HashMap<(String, u8, bool), String> = HashMap::new();
    for (name, i) in &instances_raw {
        if let Some(vi) = instance(&mut cx, name, i, &script_names, &known) {
            let fam = vi.vips.first().is_some_and(|(a, _)| a.is_ipv4());
            let key = (vi.interface.clone(), vi.vrid, fam);
            if let Some(other) = seen_vrid.get(&key) {
                let span = i
                    .get_ref()
                    .virtual_router_id
                    .as_ref()
                    .map_or(i.span(), |v| v.span());
                cx.err(
                    span,
                    format!(
                        "virtual_router_id {} on {} is already used by instance {other}",
                        vi.vrid, vi.interface
                    ),
                );
            } else {
                seen_vrid.insert(key, vi.name.clone());
            }
            let r = i.get_ref();
            let l = |cx: &Ctx<'_>, s: Option<Range<usize>>| s.map_or(0, |s| cx.line(s));
            lines
                .instance_priority
                .push(l(&cx, r.priority.as_ref().map(|p| p.span())));
            lines
                .instance_advert_int
                .push(l(&cx, r.advert_int.as_ref().map(|p| p.span())));
            lines
                .instance_auth
                .push(l(&cx, r.authentication.as_ref().map(|p| p.span())));
            instances.push(vi);
        }
    }
    let anycast = raw
        .anycast
        .as_ref()
        .and_then(|a| super::anycast::validate(&mut cx, a, &script_names, &known, &instances));
    if raw.vrrp_instance.is_empty() && raw.anycast.is_none() {
        cx.err(
            0..0,
            "no [vrrp_instance.NAME] or [anycast] table: nothing to do",
        );
    }

    if had_shape_errors {
        cx.errors.retain(|e| !e.message.contains(": missing "));
    }
    cx.errors.finish(Config {
        source: path.to_path_buf(),
        router_id: router_id.unwrap_or_default(),
        runtime_dir: runtime_dir.unwrap_or_else(|| PathBuf::from("/run/vrrp")),
        metrics,
        realtime,
        scripts,
        instances,
        anycast,
        lines,
    })
}

fn script(cx: &mut Ctx<'_>, name: &str, s: &Spanned<RawScript>) -> Option<TrackScript> {
    let r = s.get_ref();
    let before = cx.errors.len();
    let probe = match (&r.script, &r.http) {
        (Some(cmd), None) => {
            if cmd.get_ref().trim().is_empty() {
                cx.err(cmd.span(), "script is empty");
            }
            Some(Probe::Script(cmd.get_ref().clone()))
        }
        (None, Some(url)) => match crate::track::url::parse(url.get_ref()) {
            Ok(u) => Some(Probe::Http(u)),
            Err(e) => {
                cx.err(url.span(), e.to_string());
                None
            }
        },
        (Some(_), Some(h)) => {
            cx.err(
                h.span(),
                format!("vrrp_script {name}: set either script or http, not both"),
            );
            None
        }
        (None, None) => {
            cx.err(
                s.span(),
                format!("vrrp_script {name}: needs script = \"...\" or http = \"http://...\""),
            );
            None
        }
    };
    let interval = match &r.interval {
        Some(v) => cx.seconds(v, "interval", 0.01, 3600.0),
        None => Some(DEFAULT_SCRIPT_INTERVAL),
    };
    let timeout = match &r.timeout {
        Some(v) => cx.seconds(v, "timeout", 0.01, 3600.0),
        // keepalived: the timeout defaults to the interval.
        None => interval,
    };
    let weight = match &r.weight {
        Some(w) => cx.int_in::<i32>(w, "weight", -MAX_WEIGHT, MAX_WEIGHT),
        None => Some(0),
    };
    let fall = match &r.fall {
        Some(v) => cx.int_in::<u32>(v, "fall", 1, 1_000_000),
        None => Some(1),
    };
    let rise = match &r.rise {
        Some(v) => cx.int_in::<u32>(v, "rise", 1, 1_000_000),
        None => Some(1),
    };
    if cx.errors.len() != before {
        return None;
    }
    Some(TrackScript {
        name: name.to_string(),
        probe: probe?,
        interval: interval?,
        timeout: timeout?,
        weight: weight?,
        fall: fall?,
        rise: rise?,
    })
}

pub(super) fn parse_vip(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr.trim().parse().map_err(|_| {
        format!(
            "virtual_ipaddress {s:?}: expected ADDRESS or ADDRESS/PREFIX (no dev/label options)"
        )
    })?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.trim().parse::<u8>() {
            Ok(p) if p <= max => p,
            _ => return Err(format!("virtual_ipaddress {s:?}: prefix must be 0..={max}")),
        },
    };
    Ok((addr, prefix))
}

fn instance(
    cx: &mut Ctx<'_>,
    name: &str,
    i: &Spanned<RawInstance>,
    scripts: &HashMap<&str, usize>,
    known_scripts: &[&str],
) -> Option<VrrpInstance> {
    let r = i.get_ref();
    let before = cx.errors.len();
    let whole = i.span();

    let initial_master_hint = match &r.state {
        None => false,
        Some(s) => match s.get_ref().as_str() {
            "MASTER" => true,
            "BACKUP" => false,
            other => {
                cx.err(
                    s.span(),
                    format!("state must be \"MASTER\" or \"BACKUP\", got {other:?}"),
                );
                false
            }
        },
    };
    let interface = match &r.interface {
        Some(s) if !s.get_ref().is_empty() => s.get_ref().clone(),
        Some(s) => {
            cx.err(s.span(), "interface is empty");
            String::new()
        }
        None => {
            cx.err(
                whole.clone(),
                format!("vrrp_instance {name}: missing interface"),
            );
            String::new()
        }
    };
    let vrid = match &r.virtual_router_id {
        Some(v) => cx.int_in::<u8>(v, "virtual_router_id", 1, 255),
        None => {
            cx.err(
                whole.clone(),
                format!("vrrp_instance {name}: missing virtual_router_id"),
            );
            None
        }
    };
    let priority = match &r.priority {
        Some(v) => cx.int_in::<u8>(v, "priority", 1, 255),
        None => Some(DEFAULT_PRIORITY),
    };
    let version = match &r.version {
        None => Version::V2,
        Some(v) => match v.get_ref() {
            2 => Version::V2,
            3 => Version::V3,
            n => {
                cx.err(v.span(), format!("version must be 2 or 3, got {n}"));
                Version::V2
            }
        },
    };
    let advert_interval = match &r.advert_int {
        None => Some(Duration::from_secs(1)),
        Some(v) => advert_int(cx, v, version),
    };
    let preempt = !r.nopreempt.as_ref().is_some_and(|b| *b.get_ref());
    let preempt_delay = match &r.preempt_delay {
        None => Some(Duration::ZERO),
        Some(v) => cx.seconds(v, "preempt_delay", 0.0, MAX_PREEMPT_DELAY_S),
    };
    let auth = match &r.authentication {
        None => Auth::None,
        Some(a) => {
            let a = a.get_ref();
            match a.auth_type.get_ref().as_str() {
                "PASS" => match &a.auth_pass {
                    Some(p) if !p.get_ref().is_empty() => Auth::pass(p.get_ref()),
                    Some(p) => {
                        cx.err(p.span(), "auth_pass is empty");
                        Auth::None
                    }
                    None => {
                        cx.err(a.auth_type.span(), "auth_type PASS needs auth_pass");
                        Auth::None
                    }
                },
                "AH" => {
                    cx.err(
                        a.auth_type.span(),
                        "auth_type AH (IPsec) is not supported; use PASS or none",
                    );
                    Auth::None
                }
                other => {
                    cx.err(
                        a.auth_type.span(),
                        format!("auth_type must be \"PASS\", got {other:?}"),
                    );
                    Auth::None
                }
            }
        }
    };
    let checksum = match &r.checksum {
        None => ChecksumMode::PseudoHeader,
        Some(c) => match c.get_ref().as_str() {
            "pseudo-header" => ChecksumMode::PseudoHeader,
            "rfc9568" => ChecksumMode::Rfc9568,
            other => {
                cx.err(
                    c.span(),
                    format!("checksum must be \"pseudo-header\" or \"rfc9568\", got {other:?}"),
                );
                ChecksumMode::PseudoHeader
            }
        },
    };

    let mut vips: Vec<(IpAddr, u8)> = Vec::new();
    match &r.virtual_ipaddress {
        None => cx.err(
            whole.clone(),
            format!("vrrp_instance {name}: missing virtual_ipaddress"),
        ),
        Some(list) => {
            if list.get_ref().is_empty() {
                cx.err(list.span(), "virtual_ipaddress is empty");
            }
            if list.get_ref().len() > 255 {
                cx.err(
                    list.span(),
                    "at most 255 virtual addresses fit in an advertisement",
                );
            }
            for v in list.get_ref() {
                match parse_vip(v.get_ref()) {
                    Err(m) => cx.err(v.span(), m),
                    Ok((a, p)) => {
                        if let Some((first, _)) = vips.first() {
                            if first.is_ipv4() != a.is_ipv4() {
                                cx.err(v.span(), format!("{a}: all virtual addresses of an instance must be of one family (keepalived: use a second instance)"));
                                continue;
                            }
                        }
                        if vips.iter().any(|(x, _)| *x == a) {
                            cx.err(v.span(), format!("{a} is listed twice"));
                            continue;
                        }
                        if version == Version::V2 && a.is_ipv6() {
                            cx.err(
                                v.span(),
                                format!("{a}: IPv6 needs version = 3 (VRRPv2 is IPv4 only)"),
                            );
                            continue;
                        }
                        vips.push((a, p));
                    }
                }
            }
        }
    }
    let family_v4 = vips.first().map(|(a, _)| a.is_ipv4());
    let same_family = |cx: &mut Ctx<'_>, a: IpAddr, span: Range<usize>, what: &str| {
        if family_v4.is_some_and(|f| f != a.is_ipv4()) {
            cx.err(
                span,
                format!("{what} {a} is not of the virtual addresses' family"),
            );
        }
    };
    let unicast_src_ip = r.unicast_src_ip.as_ref().and_then(|s| {
        let a = cx.ip(s, "unicast_src_ip")?;
        same_family(cx, a, s.span(), "unicast_src_ip");
        Some(a)
    });
    let mut unicast_peer = Vec::new();
    for p in r.unicast_peer.iter().flatten() {
        if let Some(a) = cx.ip(p, "unicast_peer") {
            same_family(cx, a, p.span(), "unicast_peer");
            unicast_peer.push(a);
        }
    }
    let track_script = track_scripts(cx, r.track_script.as_deref(), scripts, known_scripts);
    let track_interface: Vec<String> = r
        .track_interface
        .iter()
        .flatten()
        .map(|t| t.get_ref().clone())
        .collect();
    let s = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());

    if cx.errors.len() != before {
        return None;
    }
    Some(VrrpInstance {
        name: name.to_string(),
        initial_master_hint,
        interface,
        vrid: vrid?,
        priority: priority?,
        advert_interval: advert_interval?,
        version,
        preempt,
        preempt_delay: preempt_delay?,
        auth,
        checksum,
        unicast_src_ip,
        unicast_peer,
        track_script,
        track_interface,
        vips,
        notify_master: s(&r.notify_master),
        notify_backup: s(&r.notify_backup),
        notify_fault: s(&r.notify_fault),
        notify: s(&r.notify),
    })
}

/// `track_script` names resolved to indices into the scripts; an unknown name is an error,
/// a script that exists but failed validation was reported already.
pub(super) fn track_scripts(
    cx: &mut Ctx<'_>,
    names: Option<&[Spanned<String>]>,
    scripts: &HashMap<&str, usize>,
    known_scripts: &[&str],
) -> Vec<usize> {
    let mut out = Vec::new();
    for t in names.unwrap_or_default() {
        match scripts.get(t.get_ref().as_str()) {
            Some(idx) => out.push(*idx),
            None if known_scripts.contains(&t.get_ref().as_str()) => {}
            None => cx.err(
                t.span(),
                format!(
                    "track_script {:?}: no [vrrp_script.{}]",
                    t.get_ref(),
                    t.get_ref()
                ),
            ),
        }
    }
    out
}

/// v2: whole seconds 1..=255; v3: centiseconds 0.01..=40.95.
fn advert_int(cx: &mut Ctx<'_>, v: &Spanned<f64>, version: Version) -> Option<Duration> {
    let s = *v.get_ref();
    match version {
        Version::V2 => {
            if !(1.0..=255.0).contains(&s) || s.fract() != 0.0 {
                cx.err(
                    v.span(),
                    format!("advert_int {s}: version 2 needs whole seconds 1..=255 (use version = 3 for sub-second)"),
                );
                return None;
            }
            Duration::try_from_secs_f64(s).ok()
        }
        Version::V3 => {
            let cs = (s * 100.0).round();
            if !(0.01..=40.95).contains(&s) || ((s * 100.0) - cs).abs() > 1e-6 {
                cx.err(
                    v.span(),
                    format!(
                        "advert_int {s}: version 3 needs 0.01..=40.95 seconds in steps of 0.01"
                    ),
                );
                return None;
            }
            // cs is a small positive integer here.
            Some(Duration::from_millis(cs as u64 * 10))
        }
    }
}
