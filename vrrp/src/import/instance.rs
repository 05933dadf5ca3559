//! `vrrp_script` and `vrrp_instance` blocks -> `[vrrp_script.NAME]` / `[vrrp_instance.NAME]`.

use std::net::IpAddr;

use conf::block::Directive;
use conf::import::toml_str;

use super::{header, Section, Walk};

/// A number within `min..=max` for TOML, as keepalived wrote it, if it is one.
fn number(v: &str, min: f64, max: f64) -> Option<String> {
    v.parse::<f64>()
        .ok()
        .filter(|f| (min..=max).contains(f))
        .map(|_| v.trim_start_matches('+').to_string())
}

/// An integer within `min..=max`, if it is one.
fn int(v: &str, min: i64, max: i64) -> Option<String> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .map(|n| n.to_string())
}

/// The rest of a directive's words as one command line (keepalived joins them too).
fn command(d: &Directive) -> String {
    d.args.join(" ")
}

pub(super) fn script(w: &mut Walk<'_>, d: &Directive) -> Option<(String, Section)> {
    let Some(name) = d.args.first() else {
        let n = w.lose(d, "vrrp_script without a name; left out");
        w.top.push(n);
        return None;
    };
    let mut s = Section::new(header("vrrp_script", name));
    for c in d.children() {
        let arg = c.args.first().map(String::as_str).unwrap_or("");
        let value = match c.name.as_str() {
            "script" => Some(toml_str(&command(c))),
            "interval" | "timeout" => number(arg, 0.01, 3600.0),
            "weight" => {
                if c.args.get(1).is_some_and(|a| a == "reverse") {
                    s.notes.push(w.lose(c, "\"reverse\" is not supported: the weight applies while the script fails (negative) or succeeds (positive)"));
                }
                int(arg, -253, 253)
            }
            "fall" | "rise" => int(arg, 1, 1_000_000),
            _ => {
                let n = if c.name == "user" {
                    w.lose(c, "the script runs as the user vrrp runs as")
                } else {
                    w.other(c)
                };
                s.notes.push(n);
                continue;
            }
        };
        match value {
            Some(v) => s.set(&c.name, v),
            None => s.notes.push(w.lose(
                c,
                "not a number in the range vrrp accepts; vrrp's default is used",
            )),
        }
    }
    if !s.has("script") {
        let n = w.lose(d, "no script to run; the vrrp_script is left out");
        w.top.push(n);
        return None;
    }
    if let Some((_, cmd)) = s.fields.iter().find(|(k, _)| k == "script") {
        if cmd.contains("nginx") {
            s.notes.push(conf::import::comment(
                "",
                "This script checks nginx. After the migration the proxy serves instead: its admin \
                 endpoint is a built-in probe, http = \"http://127.0.0.1:9900/healthz\"",
            ));
        }
    }
    Some((name.clone(), s))
}

pub(super) fn instance(w: &mut Walk<'_>, d: &Directive, scripts: &[String]) -> Option<Section> {
    let Some(name) = d.args.first() else {
        let n = w.lose(d, "vrrp_instance without a name; left out");
        w.top.push(n);
        return None;
    };
    let mut s = Section::new(header("vrrp_instance", name));
    let mut vips: Vec<String> = Vec::new();
    let mut interface = None;
    for c in d.children() {
        let arg = c.args.first().map(String::as_str).unwrap_or("");
        match c.name.as_str() {
            "state" if matches!(arg, "MASTER" | "BACKUP") => s.set("state", toml_str(arg)),
            "state" => s
                .notes
                .push(w.lose(c, "not MASTER or BACKUP; the instance starts as BACKUP")),
            "interface" => {
                interface = Some(arg.to_string());
                s.set("interface", toml_str(arg));
            }
            "nopreempt" => s.set("nopreempt", "true".into()),
            "preempt" => s.notes.push(Walk::noted(c, "preemption is the default")),
            "authentication" => authentication(w, c, &mut s),
            "unicast_src_ip" => match address(arg) {
                Some(a) => s.set("unicast_src_ip", toml_str(&a)),
                None => s
                    .notes
                    .push(w.lose(c, "not an IP address; adverts are multicast")),
            },
            "unicast_peer" => unicast_peers(w, c, &mut s),
            "virtual_ipaddress" => vips.extend(addresses(w, c, &mut s, interface.as_deref())),
            "track_interface" => {
                let l = list(w, c, &mut s, "per-interface weights are not supported: a tracked interface going down means FAULT");
                s.set("track_interface", l);
            }
            "track_script" => track_script(w, c, &mut s, scripts),
            // keepalived: `notify_master "CMD ARGS" [user [group]]`.
            "notify_master" | "notify_backup" | "notify_fault" | "notify" => {
                s.set(&c.name, toml_str(arg));
                if c.args.len() > 1 {
                    let why = "the script runs as the user vrrp runs as (the user/group words are dropped)";
                    s.notes.push(w.lose(c, why));
                }
            }
            _ if numeric(w, c, &mut s) => {}
            _ => {
                let n = w.other(c);
                s.notes.push(n);
            }
        }
    }
    finish(w, d, s, vips)
}

/// The instance's numeric settings, each checked against the range vrrp.toml takes; false
/// when `c` is not one of them.
fn numeric(w: &mut Walk<'_>, c: &Directive, s: &mut Section) -> bool {
    let arg = c.args.first().map(String::as_str).unwrap_or("");
    match c.name.as_str() {
        "virtual_router_id" => match int(arg, 1, 255) {
            Some(v) => s.set(&c.name, v),
            None => s
                .notes
                .push(w.lose(c, "not 1..255; the instance is left out")),
        },
        "priority" => match int(arg, 1, 255) {
            Some(v) => s.set(&c.name, v),
            None => s
                .notes
                .push(w.lose(c, "not 1..255; the default 100 is used")),
        },
        "version" => match int(arg, 2, 3) {
            Some(v) => s.set(&c.name, v),
            None => s.notes.push(w.lose(c, "not 2 or 3; version 2 is used")),
        },
        "advert_int" => match number(arg, 0.01, 255.0) {
            Some(v) => s.set(&c.name, v),
            None => s
                .notes
                .push(w.lose(c, "not 0.01..255 seconds; 1 s is used")),
        },
        "preempt_delay" => match number(arg, 0.0, 1000.0) {
            Some(v) => s.set(&c.name, v),
            None => s
                .notes
                .push(w.lose(c, "not 0..1000 seconds; no delay is used")),
        },
        _ => return false,
    }
    true
}

/// Version, VIP list and the keys vrrp requires; `None` (reported) when the instance cannot run.
fn finish(w: &mut Walk<'_>, d: &Directive, mut s: Section, vips: Vec<String>) -> Option<Section> {
    let v6 = vips.first().is_some_and(|v| v.contains(':'));
    if !s.has("version") {
        match w.default_version {
            Some(v) => s.set("version", v.to_string()),
            // keepalived runs IPv6 instances as VRRPv3.
            None if v6 => s.set("version", "3".into()),
            None => {}
        }
    }
    if s.fields.iter().any(|(k, v)| k == "version" && v == "3") && s.has("authentication") {
        s.fields.retain(|(k, _)| k != "authentication");
        s.notes.push(w.lose(
            child(d, "authentication"),
            "ignored with VRRPv3 (keepalived ignores it too); adverts carry none",
        ));
    }
    advert_int(w, d, &mut s);
    same_family(w, d, &mut s, v6);
    if !vips.is_empty() {
        s.set("virtual_ipaddress", format!("[{}]", vips.join(", ")));
    }
    let missing: Vec<&str> = ["interface", "virtual_router_id", "virtual_ipaddress"]
        .into_iter()
        .filter(|k| !s.has(k))
        .collect();
    if !missing.is_empty() {
        let n = w.lose(
            d,
            format!("no usable {}; the instance is left out", missing.join(", ")),
        );
        w.top.push(n);
        return None;
    }
    Some(s)
}

/// The last `name` directive of `d`'s block (the one keepalived uses), or `d` itself.
fn child<'d>(d: &'d Directive, name: &str) -> &'d Directive {
    d.children()
        .iter()
        .rev()
        .find(|c| c.name == name)
        .unwrap_or(d)
}

/// VRRPv2 carries whole seconds, v3 centiseconds up to 40.95 s.
fn advert_int(w: &mut Walk<'_>, d: &Directive, s: &mut Section) {
    let v3 = s.fields.iter().any(|(k, v)| k == "version" && v == "3");
    let Some(secs) = s
        .fields
        .iter()
        .find(|(k, _)| k == "advert_int")
        .and_then(|(_, v)| v.parse::<f64>().ok())
    else {
        return;
    };
    let fixed = if v3 {
        let cs = (secs * 100.0).round();
        (cs > 4095.0 || (secs * 100.0 - cs).abs() > 1e-6).then_some((
            1.0,
            "VRRPv3 takes 0.01..40.95 s in steps of 0.01: 1 s is used",
        ))
    } else {
        (secs.fract() != 0.0).then_some((
            secs.ceil(),
            "VRRPv2 adverts carry whole seconds: rounded up",
        ))
    };
    if let Some((v, why)) = fixed {
        s.set("advert_int", v.to_string());
        let at = child(d, "advert_int");
        s.notes.push(w.lose(at, format!("{secs} s: {why}")));
    }
}

/// unicast_src_ip and peers must be of the VIPs' family.
fn same_family(w: &mut Walk<'_>, d: &Directive, s: &mut Section, v6: bool) {
    let wrong = |v: &str| v.contains(':') != v6;
    if s.fields
        .iter()
        .any(|(k, v)| k == "unicast_src_ip" && wrong(v))
    {
        s.fields.retain(|(k, _)| k != "unicast_src_ip");
        let at = child(d, "unicast_src_ip");
        s.notes
            .push(w.lose(at, "not of the VIPs' family; left out"));
    }
    if let Some((_, peers)) = s.fields.iter_mut().find(|(k, _)| k == "unicast_peer") {
        let list: Vec<&str> = peers
            .trim_matches(['[', ']'])
            .split(", ")
            .filter(|p| !p.is_empty())
            .collect();
        let kept: Vec<&str> = list.iter().copied().filter(|p| !wrong(p)).collect();
        if kept.len() != list.len() {
            *peers = format!("[{}]", kept.join(", "));
            let at = child(d, "unicast_peer");
            s.notes
                .push(w.lose(at, "peers not of the VIPs' family are left out"));
        }
    }
}

fn authentication(w: &mut Walk<'_>, d: &Directive, s: &mut Section) {
    let get = |k: &str| {
        d.children()
            .iter()
            .find(|c| c.name == k)
            .and_then(|c| c.args.first().cloned())
    };
    match (get("auth_type").as_deref(), get("auth_pass")) {
        (Some("PASS"), Some(pass)) if !pass.is_empty() => {
            // keepalived uses the first 8 characters (the field is 8 bytes on the wire).
            let pass: String = pass.chars().take(8).collect();
            let v = format!("{{ auth_type = \"PASS\", auth_pass = {} }}", toml_str(&pass));
            s.set("authentication", v);
        }
        (Some("AH"), _) => s.notes.push(w.lose(
            d,
            "IPsec AH is not supported: adverts carry no authentication, so peers must have none either",
        )),
        _ => s.notes.push(w.lose(d, "no auth_type PASS with an auth_pass; adverts carry no authentication")),
    }
}

/// An address as keepalived reads it: a trailing /prefix is allowed and means nothing here.
fn address(v: &str) -> Option<String> {
    let ip = v.split('/').next()?.parse::<IpAddr>().ok()?;
    Some(ip.to_string())
}

fn unicast_peers(w: &mut Walk<'_>, d: &Directive, s: &mut Section) {
    let mut peers = Vec::new();
    for c in d.children() {
        match address(&c.name) {
            Some(a) => peers.push(toml_str(&a)),
            None => s
                .notes
                .push(w.lose(c, "not an IP address; this peer gets no adverts")),
        }
        if !c.args.is_empty() {
            s.notes
                .push(w.lose(c, "unicast peer options are not supported"));
        }
    }
    s.set("unicast_peer", format!("[{}]", peers.join(", ")));
}

/// A block of one item per line (`unicast_peer`, `track_interface`), options dropped.
fn list(w: &mut Walk<'_>, d: &Directive, s: &mut Section, options: &str) -> String {
    let mut items = Vec::new();
    for c in d.children() {
        if !c.args.is_empty() {
            s.notes.push(w.lose(c, options));
        }
        items.push(toml_str(&c.name));
    }
    format!("[{}]", items.join(", "))
}

fn track_script(w: &mut Walk<'_>, d: &Directive, s: &mut Section, scripts: &[String]) {
    let mut names = Vec::new();
    for c in d.children() {
        if !scripts.contains(&c.name) {
            s.notes
                .push(w.lose(c, "no vrrp_script of that name was imported; not tracked"));
            continue;
        }
        if !c.args.is_empty() {
            s.notes.push(w.lose(
                c,
                "a per-instance weight is not supported: the vrrp_script's own weight applies",
            ));
        }
        names.push(toml_str(&c.name));
    }
    s.set("track_script", format!("[{}]", names.join(", ")));
}

/// virtual_ipaddress entries: `ADDRESS[/PREFIX] [dev D] [label L] [brd B] [scope S] ...`.
fn addresses(
    w: &mut Walk<'_>,
    d: &Directive,
    s: &mut Section,
    interface: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut family_v4 = None;
    for c in d.children() {
        let addr = c.name.split('/').next().unwrap_or("");
        let prefix_ok = match c.name.split_once('/') {
            None => true,
            Some((a, p)) => p
                .parse::<u8>()
                .is_ok_and(|p| p <= if a.contains(':') { 128 } else { 32 }),
        };
        let Some(ip) = addr.parse::<IpAddr>().ok().filter(|_| prefix_ok) else {
            s.notes
                .push(w.lose(c, "not an IP address with a valid prefix; left out"));
            continue;
        };
        if *family_v4.get_or_insert(ip.is_ipv4()) != ip.is_ipv4() {
            s.notes.push(w.lose(c, "all VIPs of an instance must be of one family: this one needs an instance of its own"));
            continue;
        }
        let entry = toml_str(&c.name);
        if out.contains(&entry) {
            continue;
        }
        let mut opts = c.args.chunks(2);
        for pair in &mut opts {
            match pair {
                [k, v] if k == "dev" && Some(v.as_str()) == interface => {}
                [k, v] if k == "scope" && v == "global" => {}
                [k, v] if k == "dev" => s.notes.push(w.lose(
                    c,
                    format!("dev {v}: the address is added on the instance's interface"),
                )),
                [k, _] if k == "label" => s
                    .notes
                    .push(w.lose(c, "the address is added without a label")),
                [k, _] if k == "brd" => s
                    .notes
                    .push(w.lose(c, "the address is added without a broadcast address")),
                _ => s.notes.push(w.lose(
                    c,
                    format!(
                        "option \"{}\" is not supported; the address is added without it",
                        pair.join(" ")
                    ),
                )),
            }
        }
        out.push(entry);
    }
    // A virtual_ipaddress block read before `interface`: dev checks need the interface.
    if interface.is_none()
        && d.children()
            .iter()
            .any(|c| c.args.iter().any(|a| a == "dev"))
    {
        s.notes.push(conf::import::comment(
            "",
            "dev options were checked before `interface` was read",
        ));
    }
    out
}
