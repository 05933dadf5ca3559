use super::*;
use crate::wire::vrrp::{Auth, ChecksumMode, Version};

/// The documented example of vrrp.toml, verbatim: every key the format has.
const DESIGN_EXAMPLE: &str = r#"[global_defs]
router_id = "NginxNode001"

[vrrp_script.check_proxy]
http = "http://127.0.0.1:9900/healthz"   # built-in HTTP probe; or: script = "/etc/vrrp/check.sh"
interval = 0.5          # seconds
timeout = 0.3
weight = -60            # 0 => FAULT while failing
fall = 2
rise = 1

[vrrp_instance.VI_1]
state = "MASTER"        # initial hint only, as in keepalived
interface = "ens33"
virtual_router_id = 51
priority = 150
advert_int = 1          # seconds; fractional (>= 0.01) with version 3
version = 2             # 2 = RFC 3768 (keepalived's default), 3 = RFC 5798
nopreempt = false
preempt_delay = 0
authentication = { auth_type = "PASS", auth_pass = "1111" }   # version 2 only
unicast_src_ip = "172.16.249.101"       # optional
unicast_peer = []                       # optional: unicast adverts instead of multicast
track_script = ["check_proxy"]
track_interface = []
virtual_ipaddress = ["172.16.249.80/24", "172.16.249.90/24", "172.16.249.100/24"]
notify_master = "/etc/vrrp/notify.sh master"
notify_backup = "/etc/vrrp/notify.sh backup"
notify_fault  = "/etc/vrrp/notify.sh fault"
"#;

/// The keepalived.conf this replaces (the four-server setup's), translated key for key: its
/// weight -20 on priorities 150 vs 100 can never move mastership.
fn seed(router: &str, priority: u8) -> String {
    format!(
        r#"[global_defs]
router_id = "{router}"

[vrrp_script.check_nginx]
script = "/etc/keepalived/check_nginx.sh"
interval = 5
weight = -20
fall = 2
rise = 1

[vrrp_instance.VI_1]
state = "MASTER"
interface = "ens33"
virtual_router_id = 51
priority = {priority}
advert_int = 1
authentication = {{ auth_type = "PASS", auth_pass = "1111" }}
track_script = ["check_nginx"]
virtual_ipaddress = ["172.16.249.80", "172.16.249.90", "172.16.249.100"]
"#
    )
}

fn ip(s: &str) -> std::net::IpAddr {
    s.parse().unwrap()
}

fn p(text: &str) -> Result<Config, ConfigErrors> {
    parse(text, Path::new("vrrp.toml"))
}

fn errors(text: &str) -> Vec<(usize, usize, String)> {
    p(text)
        .unwrap_err()
        .0
        .into_iter()
        .map(|e| (e.line, e.col, e.message))
        .collect()
}

#[test]
fn design_example_parses_to_the_expected_config() {
    let c = p(DESIGN_EXAMPLE).unwrap();
    assert_eq!(c.router_id, "NginxNode001");
    assert_eq!(c.runtime_dir, PathBuf::from("/run/vrrp"));
    assert_eq!(
        c.scripts,
        vec![TrackScript {
            name: "check_proxy".into(),
            probe: Probe::Http(crate::track::url::parse("http://127.0.0.1:9900/healthz").unwrap()),
            interval: Duration::from_millis(500),
            timeout: Duration::from_millis(300),
            weight: -60,
            fall: 2,
            rise: 1,
        }]
    );
    let i = &c.instances[0];
    assert_eq!(i.name, "VI_1");
    assert!(i.initial_master_hint);
    assert_eq!(
        (i.interface.as_str(), i.vrid, i.priority),
        ("ens33", 51, 150)
    );
    assert_eq!(i.advert_interval, Duration::from_secs(1));
    assert_eq!(i.version, Version::V2);
    assert!(i.preempt);
    assert_eq!(i.preempt_delay, Duration::ZERO);
    assert_eq!(i.auth, Auth::pass("1111"));
    assert_eq!(i.checksum, ChecksumMode::PseudoHeader);
    assert_eq!(i.unicast_src_ip, Some(ip("172.16.249.101")));
    assert!(i.unicast_peer.is_empty());
    assert_eq!(i.track_script, vec![0]);
    assert_eq!(
        i.vips,
        vec![
            (ip("172.16.249.80"), 24),
            (ip("172.16.249.90"), 24),
            (ip("172.16.249.100"), 24)
        ]
    );
    assert_eq!(
        i.notify_master.as_deref(),
        Some("/etc/vrrp/notify.sh master")
    );
    assert_eq!(i.notify_fault.as_deref(), Some("/etc/vrrp/notify.sh fault"));
    assert_eq!(i.notify, None);

    let ic = i.instance_config(ip("172.16.249.101"));
    assert_eq!(
        ic.vips,
        vec![
            ip("172.16.249.80"),
            ip("172.16.249.90"),
            ip("172.16.249.100")
        ]
    );
    assert_eq!(ic.auth, Auth::pass("1111"));
    assert_eq!(ic.primary_addr, ip("172.16.249.101"));
    assert!(lint(&c).is_empty(), "{:?}", lint(&c));
}

#[test]
fn deploy_configs_parse_and_their_weight_moves_the_vips() {
    let s1 = parse(
        include_str!("../../../deploy/vrrp-server1.toml"),
        Path::new("deploy/vrrp-server1.toml"),
    )
    .unwrap();
    let s2 = parse(
        include_str!("../../../deploy/vrrp-server2.toml"),
        Path::new("deploy/vrrp-server2.toml"),
    )
    .unwrap();
    assert_eq!(
        (s1.instances[0].priority, s2.instances[0].priority),
        (150, 100)
    );
    assert_eq!(s1.instances[0].vips, s2.instances[0].vips);
    assert_eq!(
        s1.instances[0].vips[0],
        (ip("172.16.249.80"), 32),
        "keepalived's default /32"
    );
    // Weight 0: a failing proxy puts the balancer in FAULT (priority-0 advert, the peer takes
    // over after Skew_Time), as provision renders it and as the lab measured (1.2 s against
    // 3.8 s for the weight -60 these files had).
    assert_eq!(s1.scripts[0].weight, 0);
    let w = lint_pair(&[s1, s2]);
    assert!(w.is_empty(), "{w:?}");
}

#[test]
fn check_explains_why_a_negative_weight_hands_over_slowly() {
    let deploy = |name: &str, text: &str| {
        parse(
            &text.replace("weight = 0 ", "weight = -60 "),
            Path::new(name),
        )
        .unwrap()
    };
    let s1 = deploy("s1.toml", include_str!("../../../deploy/vrrp-server1.toml"));
    let s2 = deploy("s2.toml", include_str!("../../../deploy/vrrp-server2.toml"));
    assert_eq!(s1.scripts[0].weight, -60);
    let w = lint_pair(&[s1, s2]);
    let text: Vec<String> = w.iter().map(|w| w.to_string()).collect();
    let slow = text
        .iter()
        .find(|t| t.contains("check_proxy (weight -60)"))
        .unwrap_or_else(|| panic!("{text:?}"));
    for want in [
        "s1.toml:",
        "priority 150 -> 90, below VI_1's 100 in s2.toml",
        "ignores lower-priority adverts",
        "Master_Down_Interval",
        "3.61 s",
        "weight = 0",
        "FAULT",
        "Skew_Time",
        "0.61 s",
    ] {
        assert!(slow.contains(want), "missing {want:?} in {slow}");
    }
    // Server2 failing cannot flip anything (it is the backup already): no explanation there.
    assert_eq!(
        text.iter().filter(|t| t.contains("weight -60")).count(),
        1,
        "{text:?}"
    );
}

#[test]
fn lint_flags_the_seeds_weight_trap() {
    let s1 = parse(&seed("NginxNode001", 150), Path::new("server1.toml")).unwrap();
    let s2 = parse(&seed("NginxNode002", 100), Path::new("server2.toml")).unwrap();
    assert!(
        lint(&s1).is_empty(),
        "alone, nothing is known about the peer"
    );
    let w = lint_pair(&[s1, s2]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].file, PathBuf::from("server1.toml"));
    assert_eq!(w[0].line, 15, "the priority line");
    assert!(
        w[0].message.contains("check_nginx (weight -20)")
            && w[0].message.contains("priority 150 drops only to 130")
            && w[0].message.contains("total weight of -51 or lower")
            && w[0].message.contains("100"),
        "{}",
        w[0].message
    );
    // Same check in the other order of files.
    let s1 = parse(&seed("a", 150), Path::new("1")).unwrap();
    let s2 = parse(&seed("b", 100), Path::new("2")).unwrap();
    assert_eq!(lint_pair(&[s2, s1]).len(), 1);
}

#[test]
fn lint_pair_flags_split_brain_mismatches() {
    let s1 = parse(
        &seed("a", 150).replace("weight = -20", "weight = 0"),
        Path::new("1"),
    )
    .unwrap();
    let s2 = parse(
        &seed("b", 100)
            .replace("\"1111\"", "\"2222\"")
            .replace(", \"172.16.249.100\"", ""),
        Path::new("2"),
    )
    .unwrap();
    let w = lint_pair(&[s1, s2]);
    let msgs: Vec<&str> = w.iter().map(|w| w.message.as_str()).collect();
    assert_eq!(w.len(), 2, "{msgs:?}");
    assert!(msgs
        .iter()
        .any(|m| m.contains("virtual_ipaddress lists differ")));
    assert!(msgs.iter().any(|m| m.contains("authentication differs")));
}

#[test]
fn lint_warns_pass_with_version_3_and_low_intervals() {
    let text = DESIGN_EXAMPLE
        .replace("version = 2 ", "version = 3 ")
        .replace("advert_int = 1 ", "advert_int = 0.1 ");
    let c = p(&text).unwrap();
    assert_eq!(c.instances[0].advert_interval, Duration::from_millis(100));
    assert_eq!(
        c.instances[0].instance_config(ip("10.0.0.1")).auth,
        Auth::None
    );
    let w = lint(&c);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].line, 21);
    assert!(w[0].message.contains("ignored with version 3"));

    // A programmatically built config (e.g. rendered by provision) is linted too.
    let mut c = p(DESIGN_EXAMPLE).unwrap();
    c.instances[0].advert_interval = Duration::from_millis(500);
    let w = lint(&c);
    assert!(
        w[0].message.contains("cannot be sent by version 2"),
        "{w:?}"
    );
    assert_eq!(w[0].line, 17);
}

#[test]
fn all_semantic_errors_are_collected_with_positions() {
    let text = r#"[vrrp_script.a]
script = "/bin/true"
http = "http://x/"
weight = 300

[vrrp_instance.X]
interface = "eth0"
virtual_router_id = 0
priority = 256
advert_int = 0.5
track_script = ["a", "nope"]
virtual_ipaddress = ["10.0.0.1/33", "fd00::1", "bogus dev eth0"]
checksum = "crc"
state = "master"
"#;
    let e = errors(text);
    let lines: Vec<usize> = e.iter().map(|e| e.0).collect();
    assert_eq!(
        lines,
        vec![3, 4, 8, 9, 10, 11, 12, 12, 12, 13, 14],
        "{e:#?}"
    );
    assert_eq!(e[0].1, 8, "column of the value");
    assert!(e[0].2.contains("either script or http"));
    assert!(e[1].2.contains("weight must be -253..=253, got 300"));
    assert!(e[2].2.contains("virtual_router_id must be 1..=255, got 0"));
    assert!(e[3].2.contains("priority must be 1..=255"));
    assert!(e[4].2.contains("version 2 needs whole seconds"));
    assert!(e[5].2.contains("\"nope\""));
    assert!(e[6].2.contains("prefix must be 0..=32"));
    assert!(e[7].2.contains("IPv6 needs version = 3"));
    assert!(e[8].2.contains("no dev/label options"));
    assert!(e[9].2.contains("pseudo-header"));
    assert!(e[10].2.contains("MASTER"));

    let shown = p(text).unwrap_err().to_string();
    assert!(
        shown.starts_with("vrrp.toml:3:8: vrrp_script a: set either script or http"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 11);
}

#[test]
fn unknown_keys_and_syntax_errors_have_positions() {
    let e = errors("[vrrp_instance.X]\ninterface = \"eth0\"\nprioirty = 100\n");
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].0, e[0].1), (3, 1));
    assert!(e[0].2.contains("unknown field `prioirty`"), "{}", e[0].2);
    let e = errors("[global_defs]\nrouter_id = \"x\"\nfoo = 1\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].2.contains("no [vrrp_instance"));
    assert_eq!(e[1].0, 3);
    assert!(e[1].2.contains("unknown field `foo`"));
    let e = errors("[vrrp_instance.X]\npriority = \"high\"\n");
    assert_eq!(e[0].0, 2);
    let e = errors("[vrrp_instance.X\n");
    assert_eq!(e[0].0, 1);
}

#[test]
fn shape_errors_in_several_sections_are_all_reported() {
    let text = r#"[vrrp_script.s]
script = "/bin/true"
wieght = -10

[vrrp_instance.A]
interface = "eth0"
virtual_router_id = "fifty"
priority = 300
virtual_ipaddress = [
  "10.0.0.1",
  42,
]
authentication = { auth_type = "PASS", pass = "x" }

[vrrp_instance.B]
interface = "eth0"
virtual_router_id = 52
virtual_ipaddress = ["10.0.0.2"]
nopreempt = "yes"
"#;
    let e = errors(text);
    let got: Vec<(usize, &str)> = e.iter().map(|e| (e.0, e.2.as_str())).collect();
    assert_eq!(e.len(), 6, "{got:#?}");
    assert_eq!(e[0].0, 3);
    assert!(e[0].2.contains("unknown field `wieght`"));
    assert_eq!(e[1].0, 7);
    assert!(
        e[1].2.contains("invalid type: string \"fifty\""),
        "{}",
        e[1].2
    );
    assert_eq!(e[2].0, 8, "semantic errors are still checked");
    assert!(e[2].2.contains("priority must be 1..=255"));
    assert_eq!(
        (e[3].0, e[3].1),
        (11, 3),
        "the element inside the multi-line array"
    );
    assert_eq!(e[4].0, 13);
    assert!(e[4].2.contains("unknown field `pass`"));
    assert_eq!(e[5].0, 19);
    assert!(
        e[5].2
            .contains("invalid type: string \"yes\", expected a boolean"),
        "{}",
        e[5].2
    );
}

#[test]
fn syntax_errors_stop_the_recovery() {
    let e = errors(
        "[vrrp_instance.A]
prioirty = 1
priority = = 2
",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, 3);
}

#[test]
fn missing_keys_are_reported_per_instance() {
    let e =
        errors("[vrrp_instance.A]\npriority = 100\n\n[vrrp_instance.B]\ninterface = \"eth0\"\n");
    let msgs: Vec<&str> = e.iter().map(|e| e.2.as_str()).collect();
    assert_eq!(e.len(), 5, "{msgs:?}");
    assert!(msgs.contains(&"vrrp_instance A: missing interface"));
    assert!(msgs.contains(&"vrrp_instance B: missing virtual_router_id"));
    assert!(
        msgs.iter()
            .filter(|m| m.contains("missing virtual_ipaddress"))
            .count()
            == 2
    );
    let e = errors("[global_defs]\nrouter_id = \"x\"\n");
    assert!(e[0].2.contains("no [vrrp_instance"));
}

#[test]
fn version_3_ranges_families_and_defaults() {
    let base = "[vrrp_instance.V6]\ninterface = \"eth0\"\nvirtual_router_id = 52\nversion = 3\n";
    let c = p(&format!(
        "{base}advert_int = 0.01\nvirtual_ipaddress = [\"fd00::80\", \"fd00::90/64\"]\nchecksum = \"rfc9568\"\npreempt_delay = 2.5\nnopreempt = true\n"
    ))
    .unwrap();
    let i = &c.instances[0];
    assert_eq!(i.advert_interval, Duration::from_millis(10));
    assert_eq!(i.vips, vec![(ip("fd00::80"), 128), (ip("fd00::90"), 64)]);
    assert_eq!(i.checksum, ChecksumMode::Rfc9568);
    assert_eq!(i.priority, 100, "keepalived's default");
    assert_eq!(i.preempt_delay, Duration::from_millis(2500));
    assert!(!i.preempt);
    for bad in ["0.001", "41", "0.015", "0"] {
        let e = errors(&format!(
            "{base}advert_int = {bad}\nvirtual_ipaddress = [\"fd00::80\"]\n"
        ));
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(
            e[0].2.contains("version 3 needs 0.01..=40.95"),
            "{bad}: {e:?}"
        );
    }
    // v2 is IPv4 only; unicast peers must match the VIPs' family.
    let e = errors("[vrrp_instance.A]\ninterface = \"e\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"fd00::1\"]\nunicast_peer = [\"10.0.0.2\"]\n");
    assert!(e[0].2.contains("IPv6 needs version = 3"), "{e:?}");
    let e = errors("[vrrp_instance.A]\ninterface = \"e\"\nvirtual_router_id = 1\nvirtual_ipaddress = [\"10.0.0.1\"]\nunicast_peer = [\"fd00::2\", \"x\"]\nunicast_src_ip = \"10.0.0.5\"\n");
    assert_eq!(e.len(), 2, "{e:?}");
}

#[test]
fn duplicate_vrid_on_one_interface_and_script_options() {
    let inst = |name: &str, iface: &str| {
        format!("[vrrp_instance.{name}]\ninterface = \"{iface}\"\nvirtual_router_id = 9\nvirtual_ipaddress = [\"10.0.0.1\"]\n")
    };
    let e = errors(&format!("{}{}", inst("A", "eth0"), inst("B", "eth0")));
    assert_eq!(e.len(), 1);
    assert!(e[0].2.contains("already used by instance A"));
    assert!(p(&format!("{}{}", inst("A", "eth0"), inst("B", "eth1"))).is_ok());

    let c = p(&format!(
        "[global_defs]\nruntime_dir = \"/tmp/v1\"\n[vrrp_script.s]\nscript = \"/bin/true\"\n{}",
        inst("A", "eth0")
    ))
    .unwrap();
    assert_eq!(c.runtime_dir, PathBuf::from("/tmp/v1"));
    assert_eq!(c.scripts[0].probe, Probe::Script("/bin/true".into()));
    assert_eq!(
        (c.scripts[0].interval, c.scripts[0].timeout),
        (Duration::from_secs(1), Duration::from_secs(1))
    );
    assert_eq!(
        (c.scripts[0].weight, c.scripts[0].fall, c.scripts[0].rise),
        (0, 1, 1)
    );
    for (bad, msg) in [
        ("http = \"https://x/\"", "no TLS"),
        ("http = \"http://x:99999/\"", "bad port"),
        // The probe's own parser refuses these: the config must too, or the script would
        // fail at run time with no error at load.
        ("http = \"http://[::1:80/\"", "unclosed ["),
        ("http = \"http://x/a b\"", "bad host or path"),
        ("interval = 1", "needs script"),
        (
            "script = \"/bin/true\"\ninterval = 0",
            "interval must be between",
        ),
    ] {
        let e = errors(&format!("[vrrp_script.s]\n{bad}\n{}", inst("A", "eth0")));
        assert!(e.iter().any(|e| e.2.contains(msg)), "{bad}: {e:?}");
    }
    let e = errors(&format!(
        "[global_defs]\nruntime_dir = \"run\"\n{}",
        inst("A", "eth0")
    ));
    assert!(e[0].2.contains("absolute"));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Mutated versions of a valid file: errors, never panics, every error has a line.
        #[test]
        fn mutated_design_example(edits in prop::collection::vec((any::<prop::sample::Index>(), 0..4u8, any::<char>()), 1..8)) {
            let mut text: Vec<char> = DESIGN_EXAMPLE.chars().collect();
            for (at, op, c) in edits {
                if text.is_empty() { break; }
                let i = at.index(text.len());
                match op {
                    0 => { text.remove(i); }
                    1 => text.insert(i, c),
                    2 => text[i] = c,
                    _ => { text.insert(i, '\n'); }
                }
            }
            let text: String = text.into_iter().collect();
            match p(&text) {
                Ok(c) => { let _ = lint(&c); let _ = lint_pair(&[c.clone(), c]); }
                Err(e) => {
                    prop_assert!(!e.0.is_empty());
                    let lines = text.lines().count().max(1) + 1;
                    for err in &e.0 {
                        prop_assert!(err.line >= 1 && err.line <= lines, "{err}");
                    }
                }
            }
        }

        #[test]
        fn arbitrary_text(text in "\\PC{0,200}") {
            let _ = p(&text);
        }
    }
}

#[test]
fn check_says_which_scripts_the_unit_sandbox_breaks() {
    // What each command did under the real vrrp.service in a systemd lab host (Debian 12,
    // systemd 252; the proxy running as its own user proxyd), checked with `vrrp status`:
    // pidof, the seed's `ps -C` count and systemctl (is-active, reload) passed; sudo, and
    // killall against the proxy with -0 or a real signal, failed.
    let text = "[vrrp_script.pidof]\nscript = \"pidof proxy\"\n\
                [vrrp_script.seed]\nscript = \"/etc/vrrp/check_proxy.sh\"\n\
                [vrrp_script.active]\nscript = \"systemctl is-active --quiet proxy || systemctl restart proxy\"\n\
                [vrrp_script.nginx]\nscript = \"killall -0 nginx\"\n\
                [vrrp_script.zero]\nscript = \"/usr/bin/killall -0 proxy\"\n\
                [vrrp_script.hup]\nscript = \"pkill -HUP nginx\"\n\
                [vrrp_script.sudo]\nscript = \"pidof proxy || sudo -n true\"\n\
                [vrrp_instance.VI_1]\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = 100\n\
                virtual_ipaddress = [\"10.0.0.80/24\"]\n\
                track_script = [\"pidof\", \"seed\", \"active\", \"nginx\", \"zero\", \"hup\", \"sudo\"]\n\
                notify_master = \"echo master > /var/log/vrrp-state\"\n\
                notify_backup = \"echo backup > /run/vrrp/state\"\n";
    let c = p(text).unwrap();
    let w: Vec<String> = lint(&c).iter().map(|w| w.message.clone()).collect();
    let about = |name: &str| -> Vec<&String> {
        w.iter()
            .filter(|m| m.contains(&format!("vrrp_script {name}:")))
            .collect()
    };
    for works in ["pidof", "seed", "active", "nginx"] {
        assert!(about(works).is_empty(), "{works} works in the unit: {w:?}");
    }
    let zero = about("zero");
    assert!(
        zero.len() == 1 && zero[0].contains("proxyd") && zero[0].contains("pidof"),
        "a full path is still killall, and the proxy is another user's process: {w:?}"
    );
    let hup = about("hup");
    assert!(hup.len() == 1 && hup[0].contains("CAP_KILL"), "{w:?}");
    let sudo = about("sudo");
    assert!(
        sudo.len() == 1 && sudo[0].contains("NoNewPrivileges") && sudo[0].contains("sudo cannot"),
        "one warning, not a second one for `su`: {w:?}"
    );
    assert!(
        w.iter().any(|m| m.contains("notify_master")
            && m.contains("/var/log/vrrp-state")
            && m.contains("ProtectSystem=strict")),
        "{w:?}"
    );
    assert!(!w.iter().any(|m| m.contains("notify_backup")), "{w:?}");
}
