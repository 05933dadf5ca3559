use std::path::Path;
use std::process::Command;

use super::*;
use crate::inventory::{BgpMode, Inventory};

/// The repository's lab.toml with the anycast section the docs show.
pub(crate) fn anycast_inventory(extra: &str) -> Inventory {
    let text = format!(
        "{}\n[bgp]\nmode = \"anycast\"\nlocal_asn = 65001\nrouter = \"172.16.249.1\"\nrouter_asn = 65000\n{extra}",
        include_str!("../../../lab.toml")
    );
    Inventory::parse(&text, "lab.toml").unwrap()
}

#[test]
fn bird_conf_golden() {
    let inv = anycast_inventory("");
    let bgp = inv.anycast().unwrap();
    assert_eq!(bgp.mode, BgpMode::Anycast);
    assert!(bgp.bfd, "BFD is on unless switched off");
    let got = bird_conf(&inv, inv.host("server1").unwrap(), bgp).unwrap();
    let want = r#"# bird.conf for server1 (172.16.249.101), rendered from lab.toml [bgp]. Do not edit: changes are overwritten.
# vrrp puts the VIPs on vip0 while this balancer's proxy is healthy and takes them off
# when it is not or when vrrp stops; BIRD announces what is there. Check with
# `birdc show protocols` and `birdc show route export to_router`.
log syslog all;
router id 172.16.249.101;

# The kernel's interfaces (vip0 appears when vrrp creates it).
protocol device {
  scan time 10;
}

# The addresses on vip0, as routes.
protocol direct anycast_vips {
  ipv4;
  interface "vip0";
}

# Only the VIPs, only as host routes, only from vip0 ever leave this balancer.
define ANYCAST_VIPS = [ 172.16.249.80/32, 172.16.249.90/32, 172.16.249.100/32 ];

filter export_anycast_vips {
  if proto = "anycast_vips" && net ~ ANYCAST_VIPS then accept;
  reject;
}

# A dead balancer or link is declared down 300 ms after its last BFD packet (at the
# slower of the two sides' timers: BFD negotiates).
protocol bfd {
  interface "ens33" {
    min rx interval 100 ms;
    min tx interval 100 ms;
    multiplier 3;
  };
}

protocol bgp to_router {
  description "the router spreading the VIPs over the balancers";
  local 172.16.249.101 as 65001;
  neighbor 172.16.249.1 as 65000;
  bfd on;
  # A balancer that goes away must lose its routes at once, not have the router keep
  # them for a restart that may never come.
  graceful restart off;
  hold time 9;
  keepalive time 3;
  # Back in service soon after the router or the link returns (defaults: 5 s before the
  # first connect, 120 s between tries, 60-300 s after an error).
  connect delay time 1;
  connect retry time 5;
  error wait time 1, 30;
  ipv4 {
    import none;
    export filter export_anycast_vips;
  };
}
"#;
    assert_eq!(got, want);
    let s2 = bird_conf(&inv, inv.host("server2").unwrap(), bgp).unwrap();
    assert!(
        s2.contains("router id 172.16.249.102;\n")
            && s2.contains("local 172.16.249.102 as 65001;\n")
    );
    let no_bfd = anycast_inventory("bfd = false\n");
    let nb = bird_conf(
        &no_bfd,
        no_bfd.host("server1").unwrap(),
        no_bfd.anycast().unwrap(),
    )
    .unwrap();
    assert!(!nb.contains("bfd"), "{nb}");
    let slow = anycast_inventory("bfd_interval_ms = 500\nbfd_multiplier = 5\n");
    let sl = bird_conf(
        &slow,
        slow.host("server1").unwrap(),
        slow.anycast().unwrap(),
    )
    .unwrap();
    assert!(sl.contains("declared down 2500 ms after"), "{sl}");
    assert!(
        sl.contains(
            "    min rx interval 500 ms;\n    min tx interval 500 ms;\n    multiplier 5;\n"
        ),
        "{sl}"
    );
}

/// What the plan's validation step runs on the host: BIRD's own parser accepts the files.
#[test]
fn bird_accepts_the_rendered_configs() {
    let dir = std::env::temp_dir().join(format!("provision-bird-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (extra, host) in [("", "server1"), ("bfd = false\n", "server2")] {
        let inv = anycast_inventory(extra);
        let conf = bird_conf(&inv, inv.host(host).unwrap(), inv.anycast().unwrap()).unwrap();
        let path = dir.join(format!("{host}.conf"));
        std::fs::write(&path, &conf).unwrap();
        let out = Command::new("bird").arg("-p").arg("-c").arg(&path).output();
        let out = out.expect("bird (Debian package bird2, installed by ./run deps)");
        assert!(
            out.status.success(),
            "bird -p rejects:\n{conf}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And the check is a real one: a broken file fails it.
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "protocol bgp router { }\n").unwrap();
    let out = Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn anycast_vrrp_toml_golden_and_valid() {
    let inv = anycast_inventory("");
    let got = crate::render::vrrp_toml(&inv, inv.host("server2").unwrap()).unwrap();
    let want = r#"# vrrp.toml for server2 (172.16.249.102), rendered from lab.toml. Do not edit: changes are overwritten.
[global_defs]
router_id = "server2"
runtime_dir = "/run/vrrp"

# The proxy's health endpoint; a failing proxy withdraws this balancer's announcement.
[vrrp_script.check_proxy]
http = "http://127.0.0.1:9900/healthz"
interval = 0.3
timeout = 0.2
weight = 0
fall = 2
rise = 1

# lab.toml [bgp] mode = "anycast": the VIPs sit on vip0 while the checks pass, and BIRD
# (bird.conf) announces them to the router 172.16.249.1 (AS 65000) over BGP.
[anycast]
interface = "vip0"
track_script = ["check_proxy"]
track_interface = ["ens33"]
virtual_ipaddress = ["172.16.249.80/32", "172.16.249.90/32", "172.16.249.100/32"]
"#;
    assert_eq!(got, want);
    // What `vrrp --check` runs: valid, and without warnings.
    let cfg = vrrp::config::parse(&got, Path::new("vrrp.toml")).unwrap();
    assert!(vrrp::config::lint(&cfg).is_empty());
    let a = cfg.anycast.unwrap();
    assert_eq!((a.interface.as_str(), a.vips.len()), (ANYCAST_INTERFACE, 3));
}

#[test]
fn balancer_files_add_bird_conf_in_anycast_mode_only() {
    let inv = anycast_inventory("");
    let files = crate::render::balancer_files(&inv, inv.host("server1").unwrap()).unwrap();
    let bird = files.iter().find(|f| f.path == BIRD_CONFIG_PATH).unwrap();
    assert_eq!(bird.mode, 0o644);
    assert!(bird.contents.contains("protocol bgp to_router"));
    let vrrp = Inventory::parse(include_str!("../../../lab.toml"), "lab.toml").unwrap();
    let files = crate::render::balancer_files(&vrrp, vrrp.host("server1").unwrap()).unwrap();
    assert!(files.iter().all(|f| f.path != BIRD_CONFIG_PATH));
    // `mode = "vrrp"` with BGP keys present renders exactly the VRRP files.
    let text = format!(
        "{}\n[bgp]\nmode = \"vrrp\"\nlocal_asn = 65001\nrouter = \"172.16.249.1\"\nrouter_asn = 65000\n",
        include_str!("../../../lab.toml")
    );
    let with_section = Inventory::parse(&text, "lab.toml").unwrap();
    assert!(with_section.anycast().is_none());
    let h = with_section.host("server1").unwrap();
    assert_eq!(
        crate::render::balancer_files(&with_section, h).unwrap(),
        crate::render::balancer_files(&vrrp, vrrp.host("server1").unwrap()).unwrap()
    );
}

/// deploy/'s anycast examples are exactly what provision renders for server1 with the
/// documented `[bgp]` section, so a hand install and a provisioned one never drift apart.
#[test]
fn deploy_examples_are_the_rendered_files() {
    let inv = anycast_inventory("");
    let s1 = inv.host("server1").unwrap();
    let bgp = inv.anycast().unwrap();
    assert_eq!(
        include_str!("../../../deploy/bird-anycast.conf"),
        bird_conf(&inv, s1, bgp).unwrap()
    );
    assert_eq!(
        include_str!("../../../deploy/vrrp-anycast.toml"),
        vrrp_toml(&inv, s1, bgp).unwrap()
    );
}
