//! `[anycast]` validation: raw table -> [`Anycast`], errors collected with their position.

use std::collections::HashMap;
use std::net::IpAddr;

use toml::Spanned;

use super::raw::RawAnycast;
use super::validate::{parse_vip, track_scripts, Ctx};
use super::{Anycast, VrrpInstance};

/// The interface the VIPs go on when `interface` is not given.
pub const DEFAULT_INTERFACE: &str = "vip0";

pub(super) fn validate(
    cx: &mut Ctx<'_>,
    a: &Spanned<RawAnycast>,
    scripts: &HashMap<&str, usize>,
    known_scripts: &[&str],
    instances: &[VrrpInstance],
) -> Option<Anycast> {
    let r = a.get_ref();
    let before = cx.errors.len();
    let interface = match &r.interface {
        None => DEFAULT_INTERFACE.to_string(),
        Some(i) => {
            let name = i.get_ref();
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
                cx.err(
                    i.span(),
                    format!("interface {name:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)"),
                );
            }
            name.clone()
        }
    };
    let vips = vips(cx, a, instances);
    let track_script = track_scripts(cx, r.track_script.as_deref(), scripts, known_scripts);
    let mut track_interface = Vec::new();
    for t in r.track_interface.iter().flatten() {
        if *t.get_ref() == interface {
            cx.err(
                t.span(),
                format!("track_interface {interface:?} is the anycast interface itself"),
            );
        }
        track_interface.push(t.get_ref().clone());
    }
    let s = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
    if cx.errors.len() != before {
        return None;
    }
    Some(Anycast {
        interface,
        vips,
        track_script,
        track_interface,
        notify_announce: s(&r.notify_announce),
        notify_withdraw: s(&r.notify_withdraw),
        line: cx.line(a.span()),
    })
}

/// The VIPs: host routes only (a BGP announcement of anything wider would draw traffic for
/// addresses nobody here serves), none listed twice or also held by a VRRP instance.
fn vips(cx: &mut Ctx<'_>, a: &Spanned<RawAnycast>, instances: &[VrrpInstance]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let Some(list) = &a.get_ref().virtual_ipaddress else {
        cx.err(a.span(), "[anycast]: missing virtual_ipaddress");
        return out;
    };
    if list.get_ref().is_empty() {
        cx.err(list.span(), "virtual_ipaddress is empty");
    }
    for v in list.get_ref() {
        let (addr, prefix) = match parse_vip(v.get_ref()) {
            Ok(p) => p,
            Err(m) => {
                cx.err(v.span(), m);
                continue;
            }
        };
        if prefix != Anycast::prefix(addr) {
            cx.err(
                v.span(),
                format!(
                    "{addr}/{prefix}: an anycast VIP is a host route (/{}): it is announced as such",
                    Anycast::prefix(addr)
                ),
            );
        } else if out.contains(&addr) {
            cx.err(v.span(), format!("{addr} is listed twice"));
        } else if let Some(i) = instances
            .iter()
            .find(|i| i.vips.iter().any(|(x, _)| *x == addr))
        {
            cx.err(
                v.span(),
                format!(
                    "{addr} is also a VIP of vrrp_instance {}: one address is either elected or announced",
                    i.name
                ),
            );
        } else {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::parse;

    const ANYCAST: &str = r#"[global_defs]
router_id = "server1"

[vrrp_script.check_proxy]
http = "http://127.0.0.1:9900/healthz"
interval = 0.3
weight = 0
fall = 2

[anycast]
virtual_ipaddress = ["172.16.249.80", "172.16.249.90/32", "fd00::80/128"]
track_script = ["check_proxy"]
track_interface = ["ens33"]
notify_withdraw = "/etc/vrrp/withdrawn.sh"
"#;

    fn errors(text: &str) -> String {
        parse(text, Path::new("vrrp.toml")).unwrap_err().to_string()
    }

    #[test]
    fn anycast_alone_is_a_whole_config() {
        let cfg = parse(ANYCAST, Path::new("vrrp.toml")).unwrap();
        assert!(cfg.instances.is_empty());
        let a = cfg.anycast.unwrap();
        assert_eq!(a.interface, "vip0");
        let vips: Vec<String> = a.vips.iter().map(|v| v.to_string()).collect();
        assert_eq!(vips, ["172.16.249.80", "172.16.249.90", "fd00::80"]);
        assert_eq!(a.track_script, [0]);
        assert_eq!(a.track_interface, ["ens33"]);
        assert_eq!(a.notify_withdraw.as_deref(), Some("/etc/vrrp/withdrawn.sh"));
        assert_eq!(a.notify_announce, None);
        assert_eq!(a.line, 10);
    }

    #[test]
    fn anycast_errors_name_their_line() {
        let text = ANYCAST
            .replace("\"172.16.249.90/32\"", "\"172.16.249.90/24\"")
            .replace("[\"check_proxy\"]", "[\"check_prox\"]")
            .replace(
                "track_interface = [\"ens33\"]",
                "track_interface = [\"vip0\"]\ninterface = \"vip0\"\nweight = 1",
            );
        let e = errors(&text);
        assert!(e.contains("vrrp.toml:11:"), "{e}");
        assert!(
            e.contains("172.16.249.90/24: an anycast VIP is a host route (/32)"),
            "{e}"
        );
        // Shape errors (unknown key) stop before validation, with their line.
        assert!(
            e.contains("vrrp.toml:15:") && e.contains("unknown field `weight`"),
            "{e}"
        );
        let text = text.replace("weight = 1\n", "");
        let e = errors(&text);
        assert!(
            e.contains("vrrp.toml:12:") && e.contains("no [vrrp_script.check_prox]"),
            "{e}"
        );
        assert!(
            e.contains("vrrp.toml:13:") && e.contains("is the anycast interface itself"),
            "{e}"
        );
        let e = errors(&ANYCAST.replace("virtual_ipaddress", "#"));
        assert!(e.contains("missing virtual_ipaddress"), "{e}");
        let e = errors(&ANYCAST.replace(", \"fd00::80/128\"", ", \"172.16.249.80\""));
        assert!(e.contains("172.16.249.80 is listed twice"), "{e}");
        let e = errors("[global_defs]\nrouter_id = \"x\"\n");
        assert!(
            e.contains("no [vrrp_instance.NAME] or [anycast] table"),
            "{e}"
        );
    }

    #[test]
    fn an_address_is_either_elected_or_announced() {
        let text = format!(
            "{ANYCAST}\n[vrrp_instance.VI_1]\ninterface = \"ens33\"\nvirtual_router_id = 51\nvirtual_ipaddress = [\"172.16.249.90/24\"]\n"
        );
        let e = errors(&text);
        assert!(
            e.contains("172.16.249.90 is also a VIP of vrrp_instance VI_1"),
            "{e}"
        );
        let text = text.replace("[\"172.16.249.90/24\"]", "[\"172.16.249.200/24\"]");
        let cfg = parse(&text, Path::new("vrrp.toml")).unwrap();
        assert_eq!((cfg.instances.len(), cfg.anycast.is_some()), (1, true));
    }

    #[test]
    fn anycast_without_tracking_is_linted() {
        let cfg = parse(ANYCAST, Path::new("vrrp.toml")).unwrap();
        assert!(crate::config::lint(&cfg).is_empty());
        let text = ANYCAST.replace("track_script = [\"check_proxy\"]", "");
        let cfg = parse(&text, Path::new("vrrp.toml")).unwrap();
        let w = crate::config::lint(&cfg);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].line, 10);
        assert!(w[0].message.contains("no track_script"), "{w:?}");
    }
}
