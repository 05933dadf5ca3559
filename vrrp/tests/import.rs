//! `vrrp import`: the seed's two keepalived.conf files and provision's rendering of them come back
//! as the vrrp.toml we deploy (apart from the track script, on purpose); the real binary's exit
//! status, report and `--check` (which finds the seed's -20 trap); the keepalived corpus against
//! its golden reports.
//!
//! Goldens are rewritten only by `UPDATE_IMPORT_GOLDENS=1 cargo test -p vrrp --test import`
//! (never by a normal run, which compares).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use conf::block::FsFiles;
use vrrp::config::{self, Config, Probe};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus() -> PathBuf {
    repo()
        .join("tests/corpus/keepalived")
        .canonicalize()
        .unwrap()
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("vrrp-import-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn import(path: &Path) -> (Config, conf::import::Imported) {
    let files = FsFiles {
        confine: path.parent().map(Path::to_path_buf),
    };
    let imported = vrrp::import::keepalived(path, &files).unwrap();
    let cfg = config::parse(&imported.toml, Path::new("imported.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
    (cfg, imported)
}

/// Field-by-field equality of everything but the track script's probe, timing and weight,
/// which deploy/ and provision change on purpose (an HTTP probe of the proxy instead of a script
/// that checks nginx). Returns the imported script for the caller's checks.
fn assert_equivalent(mut imported: Config, mut ours: Config) -> config::TrackScript {
    let script = imported.scripts[0].clone();
    assert_eq!(imported.scripts.len(), 1);
    assert_eq!(ours.scripts.len(), 1);
    assert_eq!(
        (script.fall, script.rise),
        (ours.scripts[0].fall, ours.scripts[0].rise)
    );
    imported.scripts.clear();
    ours.scripts.clear();
    imported.source = PathBuf::new();
    ours.source = PathBuf::new();
    imported.lines = Default::default();
    ours.lines = Default::default();
    assert_eq!(imported, ours);
    script
}

#[test]
fn seed_keepalived_confs_import_to_deploy_vrrp_tomls() {
    for n in [1, 2] {
        let (cfg, imported) = import(&corpus().join(format!("seed-server{n}.conf")));
        let deploy = config::load(&repo().join(format!("deploy/vrrp-server{n}.toml"))).unwrap();
        let script = assert_equivalent(cfg, deploy);
        assert_eq!(
            script.probe,
            Probe::Script("/etc/keepalived/check_nginx.sh".into())
        );
        assert_eq!(script.interval, Duration::from_secs(5));
        assert_eq!(script.weight, -20);
        let report = imported.report();
        let directives: Vec<&str> = imported
            .losses
            .iter()
            .map(|l| l.directive.as_str())
            .collect();
        assert_eq!(
            directives,
            [
                "notification_email",
                "notification_email_from",
                "smtp_server",
                "smtp_connect_timeout",
                "vrrp_skip_check_adv_addr",
                "vrrp_garp_interval",
                "vrrp_gna_interval"
            ],
            "{report}"
        );
        assert!(imported.toml.contains("This script checks nginx."));
    }
}

#[test]
fn provision_rendered_keepalived_conf_imports_back_to_rendered_vrrp_toml() {
    let inv = provision::inventory::Inventory::load(&repo().join("lab.toml")).unwrap();
    let dir = TempDir::new("render");
    for host in inv.balancers() {
        let text = provision::render_seed::keepalived_conf(&inv, host).unwrap();
        let path = dir.0.join(format!("{}.keepalived.conf", host.name));
        std::fs::write(&path, text).unwrap();
        let (cfg, imported) = import(&path);
        let ours = provision::render::vrrp_toml(&inv, host).unwrap();
        let ours = config::parse(&ours, Path::new("rendered.toml")).unwrap();
        let script = assert_equivalent(cfg, ours);
        assert_eq!(
            script.probe,
            Probe::Script(provision::render_seed::CHECK_NGINX.into())
        );
        assert_eq!(script.weight, provision::render_seed::SEED_TRACK_WEIGHT);
        // Only script_user / enable_script_security / vrrp_skip_check_adv_addr are reported.
        assert_eq!(imported.losses.len(), 3, "{}", imported.report());
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vrrp"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_exits_0_3_1_and_check_finds_the_seeds_trap() {
    let dir = TempDir::new("cli");
    let d = &dir.0;
    // The seed's pair: both import with losses (exit 3), and --check on the two outputs warns
    // that weight -20 never moves the VIPs.
    let mut outs = Vec::new();
    for n in [1, 2] {
        let src = corpus().join(format!("seed-server{n}.conf"));
        let out = d.join(format!("vrrp{n}.toml"));
        let (code, stdout, stderr) =
            run(&["import", src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert_eq!(code, 3, "{stderr}");
        assert!(stdout.is_empty());
        assert!(stderr.contains(&format!(
            "seed-server{n}.conf:5: directive \"notification_email\" is not supported: no e-mail is sent"
        )), "{stderr}");
        outs.push(out);
    }
    let (code, stdout, stderr) = run(&[
        "--check",
        "--config",
        outs[0].to_str().unwrap(),
        "--config",
        outs[1].to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("priority 150 drops only to 130, still above VI_1's 100"),
        "{stdout}"
    );

    // Everything mapped: exit 0, empty report.
    let full = d.join("full.conf");
    std::fs::write(
        &full,
        "global_defs {\n  router_id lb1\n}\nvrrp_script chk {\n  script \"/usr/bin/true\"\n  interval 2\n  timeout 1\n  weight -60\n  fall 3\n  rise 2\n}\nvrrp_instance VI_6 {\n  state BACKUP\n  interface eth1\n  virtual_router_id 61\n  priority 90\n  advert_int 0.5\n  version 3\n  nopreempt\n  preempt_delay 5\n  unicast_src_ip 10.1.0.2\n  unicast_peer {\n    10.1.0.3\n  }\n  virtual_ipaddress {\n    10.1.0.100/24 dev eth1\n  }\n  track_interface {\n    eth0\n  }\n  track_script {\n    chk\n  }\n  notify_master \"/etc/vrrp/notify.sh master\"\n  notify_backup /etc/vrrp/backup.sh\n}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["import", full.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let cfg = config::parse(&stdout, Path::new("full.toml")).unwrap();
    let vi = &cfg.instances[0];
    assert_eq!((vi.vrid, vi.priority, vi.preempt), (61, 90, false));
    assert_eq!(vi.advert_interval, Duration::from_millis(500));
    assert_eq!(
        vi.unicast_peer,
        ["10.1.0.3".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(vi.track_interface, ["eth0"]);
    assert_eq!(
        vi.notify_master.as_deref(),
        Some("/etc/vrrp/notify.sh master")
    );
    assert_eq!(cfg.scripts[0].weight, -60);

    // Unreadable and unparsable input: exit 1, file:line:col.
    let (code, _, _) = run(&["import", d.join("nope.conf").to_str().unwrap()]);
    assert_eq!(code, 1);
    let bad = d.join("bad.conf");
    std::fs::write(&bad, "vrrp_instance X {\n  priority 100\n").unwrap();
    let (code, _, stderr) = run(&["import", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!(
            "{}:3:1: unexpected end of file, expecting \"}}\"",
            bad.display()
        )),
        "{stderr}"
    );
}

#[test]
fn what_vrrp_cannot_do_is_reported_line_by_line() {
    let dir = TempDir::new("lossy");
    let path = dir.0.join("keepalived.conf");
    std::fs::write(
        &path,
        "vrrp_sync_group G {\n  group {\n    VI_1\n  }\n}\nvrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 7\n  authentication {\n    auth_type AH\n    auth_pass x\n  }\n  virtual_ipaddress {\n    10.0.0.7/24 brd 10.0.0.255 dev eth0 label eth0:1 scope link\n  }\n  virtual_ipaddress_excluded {\n    10.0.0.8\n  }\n  notify \"/bin/n.sh\" keepalived_script\n}\nvirtual_server 10.0.0.7 80 {\n  real_server 10.0.0.20 80 {\n  }\n}\nstatic_routes {\n  10.1.0.0/16 via 10.0.0.1\n}\nbfd_instance b {\n}\n",
    )
    .unwrap();
    let imported = vrrp::import::keepalived(&path, &FsFiles::default()).unwrap();
    let p = path.display();
    let want = format!(
        "{p}:1: directive \"vrrp_sync_group\" is not supported: instances fail over one by one, not as a group\n\
         {p}:9: directive \"authentication\" is not supported: IPsec AH is not supported: adverts carry no authentication, so peers must have none either\n\
         {p}:14: directive \"10.0.0.7/24\" is not supported: the address is added without a broadcast address\n\
         {p}:14: directive \"10.0.0.7/24\" is not supported: the address is added without a label\n\
         {p}:14: directive \"10.0.0.7/24\" is not supported: option \"scope link\" is not supported; the address is added without it\n\
         {p}:16: directive \"virtual_ipaddress_excluded\" is not supported: these addresses are not added on becoming master (they were never in adverts)\n\
         {p}:19: directive \"notify\" is not supported: the script runs as the user vrrp runs as (the user/group words are dropped)\n\
         {p}:21: directive \"virtual_server\" is not supported: LVS load balancing is not supported; the proxy balances HTTP (proxy import)\n\
         {p}:25: directive \"static_routes\" is not supported: the routes are not configured; configure them with the system's network setup\n\
         {p}:28: directive \"bfd_instance\" is not supported: BFD is not supported; use a vrrp_script to track the peer\n"
    );
    assert_eq!(imported.report(), want);
    assert_eq!(imported.exit_code(), 3);
    // Each one is marked where it was dropped.
    assert_eq!(
        imported.toml.matches("# NOT IMPORTED ").count(),
        10,
        "{}",
        imported.toml
    );
    let cfg = config::parse(&imported.toml, &path).unwrap();
    assert_eq!(
        cfg.instances[0].vips,
        ["10.0.0.7"
            .parse::<std::net::IpAddr>()
            .map(|a| (a, 24))
            .unwrap()]
    );
}

/// Migration of one balancer at a time: the preferred balancer's keepalived.conf, imported, runs
/// as our vrrp next to a peer still running keepalived with its own unchanged keepalived.conf
/// (in network namespaces of this test): ours takes the VIPs by priority, and hands them to
/// keepalived when it stops.
#[test]
fn an_imported_keepalived_conf_runs_next_to_the_keepalived_peer() {
    const VIPS: [&str; 3] = ["10.99.0.80/24", "10.99.0.90/24", "10.99.0.100/24"];
    let mut lab = common::Lab::new("import", 2);
    let conf = |prio| common::keepalived_conf(prio, 2, 1.0, &VIPS, "");
    let src = lab.path("server1-keepalived.conf");
    std::fs::write(&src, conf(150)).unwrap();
    let imported = vrrp::import::keepalived(&src, &FsFiles::default()).unwrap();
    assert_eq!(imported.exit_code(), 0, "{}", imported.report());
    // Each daemon on this machine needs a runtime directory of its own (keepalived has no
    // such key, so the import leaves vrrp's default).
    let run_dir = lab.path("run-ours");
    let toml = imported.toml.replacen(
        "[global_defs]\n",
        &format!("[global_defs]\nruntime_dir = \"{}\"\n", run_dir.display()),
        1,
    );
    lab.start_keepalived(1, "peer", &conf(100));
    let ours = lab.start_vrrp(0, "ours", &toml);
    let mut w0 = common::Watch::new(&lab, &lab.hosts[0].clone());
    let mut w1 = common::Watch::new(&lab, &lab.hosts[1].clone());
    let vips = ["10.99.0.80", "10.99.0.90", "10.99.0.100"];
    let all = |w: &mut common::Watch| vips.iter().all(|v| w.has(v));
    let none = |w: &mut common::Watch| vips.iter().all(|v| !w.has(v));
    let ok = common::wait_for(Duration::from_secs(10), || all(&mut w0) && none(&mut w1));
    assert!(
        ok.is_some(),
        "ours (150) never held the VIPs alone\n{}",
        lab.log_dump()
    );
    lab.signal(ours, libc::SIGTERM);
    let ok = common::wait_for(Duration::from_secs(5), || all(&mut w1) && none(&mut w0));
    assert!(
        ok.is_some(),
        "keepalived never took over\n{}",
        lab.log_dump()
    );
}

#[test]
fn corpus_reports_match_goldens() {
    let dir = corpus();
    let update = std::env::var_os("UPDATE_IMPORT_GOLDENS").is_some();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "corpus has {} keepalived files",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let files = FsFiles {
            confine: Some(dir.clone()),
        };
        let got = match vrrp::import::keepalived(path, &files) {
            Ok(imported) => {
                if let Err(errors) = config::parse(&imported.toml, path) {
                    panic!("{}: {errors}\n{}", path.display(), imported.toml);
                }
                format!("exit {}\n{}", imported.exit_code(), imported.report())
            }
            Err(e) => format!("exit 1\n{e}\n"),
        };
        let got = got.replace(&format!("{}/", dir.display()), "");
        let golden = path.with_extension("conf.golden");
        if update {
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != got {
            failures.push(format!(
                "{}:\n--- want\n{want}--- got\n{got}",
                golden.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
