//! Golden tests: each OS family's full plan (every command and file) for the repository's
//! lab.toml. Pure: no SSH. They only compare: after an intended change, regenerate with
//! `cargo run -p provision --example update_golden` and review the diff.

#[path = "golden/cases.rs"]
mod cases;

use std::path::Path;

use cases::SEED;
use provision::inventory::Inventory;
use provision::os::Family;
use provision::steps;

/// Panics unless `path` holds exactly `text`. Reads only: no environment variable or flag
/// makes it write.
fn compare(path: &Path, text: &str) {
    let want = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (cargo run -p provision --example update_golden)",
            path.display()
        )
    });
    if want != text {
        let d = provision::diff::unified(&path.display().to_string(), Some(&want), text);
        panic!("plan differs from {}:\n{d}", path.display());
    }
}

fn golden(family: Family, host: &str) {
    compare(&cases::path(family, host), &cases::render(family, host));
}

#[test]
fn update_golden_in_the_environment_does_not_overwrite() {
    // An UPDATE_GOLDEN=1 left in a shell once made every golden test compare a file with
    // itself.
    std::env::set_var("UPDATE_GOLDEN", "1");
    let path = std::env::temp_dir().join(format!("provision-golden-{}", std::process::id()));
    std::fs::write(&path, "stale\n").unwrap();
    let r = std::panic::catch_unwind(|| compare(&path, "fresh\n"));
    let left = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(r.is_err(), "a stale golden file passed");
    assert_eq!(left, "stale\n");
}

/// Every .plan file is one of the cases (a left-over file would look tested and be stale).
#[test]
fn no_stray_golden_files() {
    let dir = cases::path(Family::El7, "x")
        .parent()
        .unwrap()
        .to_path_buf();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "plan"))
        .collect();
    files.sort();
    let mut want: Vec<_> = cases::CASES
        .iter()
        .map(|(f, h)| cases::path(*f, h))
        .chain(
            cases::ANYCAST_CASES
                .iter()
                .map(|(f, h)| cases::anycast_path(*f, h)),
        )
        .collect();
    want.sort();
    assert_eq!(files, want);
}

macro_rules! goldens {
    ($($name:ident: $fam:expr, $host:expr;)*) => {
        $( #[test] fn $name() { golden($fam, $host); } )*
    };
}

goldens! {
    el7_balancer: Family::El7, "server1";
    el7_backend: Family::El7, "server3";
    el8_balancer: Family::El8, "server1";
    el8_backend: Family::El8, "server3";
    el9_balancer: Family::El9, "server2";
    el9_backend: Family::El9, "server4";
    debian12_balancer: Family::Debian12, "server1";
    debian12_backend: Family::Debian12, "server3";
    ubuntu_balancer: Family::Ubuntu, "server2";
    ubuntu_backend: Family::Ubuntu, "server4";
}

fn anycast_golden(family: Family, host: &str) {
    compare(
        &cases::anycast_path(family, host),
        &cases::render_anycast(family, host),
    );
}

#[test]
fn anycast_debian12_balancer() {
    anycast_golden(Family::Debian12, "server1");
}

#[test]
fn anycast_el9_balancer() {
    anycast_golden(Family::El9, "server2");
}

#[test]
fn anycast_el7_is_refused() {
    anycast_golden(Family::El7, "server1");
}

/// What anycast mode changes, asserted directly: BIRD installed, its config validated before
/// it replaces the old one, BGP and BFD open to the router only, no VRRP; backends as in VRRP
/// mode; EL7 refused for balancers only.
#[test]
fn anycast_plans_keep_their_properties() {
    let text = format!("{SEED}{}", cases::ANYCAST_BGP);
    let inv = Inventory::parse(&text, "lab.toml").unwrap();
    let vrrp_inv = Inventory::parse(SEED, "lab.toml").unwrap();
    for fam in Family::ALL {
        for h in &inv.hosts {
            let plan = steps::plan(&inv, h, fam);
            if h.name == "server3" || h.name == "server4" {
                let same = steps::plan(&vrrp_inv, h, fam).unwrap();
                assert_eq!(
                    plan.unwrap(),
                    same,
                    "{fam} {}: backends do not change",
                    h.name
                );
                continue;
            }
            if fam == Family::El7 {
                let e = plan.unwrap_err().to_string();
                assert!(e.contains("not supported on el7"), "{e}");
                continue;
            }
            let text = plan.unwrap().render();
            assert!(text.contains("validate: bird -p -c {}"), "{fam}");
            assert!(
                text.contains("on change: systemctl reload-or-restart bird"),
                "{fam}"
            );
            assert!(text.contains("[anycast]"), "{fam}");
            assert!(
                !text.contains("ip protocol 112") && !text.contains("protocol value=\"vrrp\""),
                "{fam}: no VRRP"
            );
            if fam.is_el() {
                assert!(text.contains("package epel-release installed"));
                assert!(text.contains("file /etc/bird.conf mode 0644"));
                assert!(text.contains(
                    "source address=\"172.16.249.1\" port port=\"179\" protocol=\"tcp\""
                ));
                assert!(text.contains(
                    "source address=\"172.16.249.1\" port port=\"3784-3785\" protocol=\"udp\""
                ));
            } else {
                assert!(text.contains("package bird2 installed"));
                assert!(text.contains("file /etc/bird/bird.conf mode 0644"));
                assert!(text.contains("ip saddr 172.16.249.1 tcp dport 179 counter accept"));
                assert!(text.contains("ip saddr 172.16.249.1 udp dport 3784-3785 counter accept"));
            }
        }
    }
}

/// Facts the golden files encode, asserted directly so a careless regeneration cannot hide a
/// regression.
#[test]
fn plans_keep_the_safety_properties() {
    let inv = Inventory::parse(SEED, "lab.toml").unwrap();
    for fam in Family::ALL {
        for h in &inv.hosts {
            let plan = steps::plan(&inv, h, fam).unwrap();
            let text = plan.render();
            let names: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
            // The address the tool is connected through changes last.
            assert_eq!(names.last(), Some(&"static address"), "{fam} {}", h.name);
            // Firewall kept on, SELinux never disabled.
            assert!(!text.contains("systemctl stop firewalld"));
            assert!(!text.contains("disable firewalld"));
            assert!(!text.contains("setenforce 0"));
            assert!(!text.contains("SELINUX=disabled"));
            if fam.is_el() {
                assert!(text.contains("--add-port=80/tcp"));
                assert!(text.contains("SELINUX=enforcing"));
            } else {
                assert!(text.contains("tcp dport 80 accept"));
            }
            if h.name == "server1" {
                // VRRP allowed from the other balancer only.
                assert!(text.contains("172.16.249.102"), "{fam}");
                assert!(names.contains(&"proxy") && names.contains(&"vrrp"));
                let serial: Vec<&str> = plan
                    .steps
                    .iter()
                    .filter(|s| s.serial)
                    .map(|s| s.name.as_str())
                    .collect();
                // The turn includes the VIP check: the next balancer waits for it.
                assert_eq!(serial, ["proxy", "vrrp", "vip check"]);
                assert!(text.contains("validate: /usr/local/bin/proxy --check --config {}"));
                assert!(text.contains("validate: /usr/local/bin/vrrp --check --config {}"));
                // vrrp.toml holds auth_pass: root-only, and the password never printed.
                assert!(
                    text.contains("file /etc/vrrp/vrrp.toml mode 0600\n"),
                    "{fam}"
                );
                assert!(text.contains("auth_pass = ********\n"), "{fam}");
                assert!(!text.contains("1111"), "{fam}");
            }
            // Units rendered for the family's systemd: only CentOS 7's 219 needs provision to
            // make the proxy's user, log directory and capability.
            let static_user = text.contains("ensure system user proxy");
            if h.name == "server1" {
                assert_eq!(static_user, fam == Family::El7, "{fam}");
                assert_eq!(
                    text.contains("  | DynamicUser=yes\n"),
                    fam != Family::El7,
                    "{fam}"
                );
            }
            if h.name == "server3" {
                assert!(text.contains("  | HTTP WEB NODE 01"), "{fam}");
                assert!(!names.contains(&"proxy"));
            }
        }
    }
}

#[test]
fn os_section_sets_the_el7_repository_and_is_optional() {
    let inv = Inventory::parse(SEED, "lab.toml").unwrap();
    assert_eq!(inv.os.el7_repo_baseurl, None);
    let h = inv.host("server1").unwrap();
    let plain = steps::plan(&inv, h, Family::El7).unwrap();
    assert!(!plain.steps.iter().any(|s| s.name == "el7 repositories"));

    let text = format!(
        "{SEED}\n[os]\nel7_repo_baseurl = \"http://mirrors.aliyun.com/centos-vault/7.9.2009\"\n"
    );
    let inv = Inventory::parse(&text, "lab.toml").unwrap();
    let h = inv.host("server1").unwrap();
    let rendered = steps::plan(&inv, h, Family::El7).unwrap().render();
    assert!(
        rendered.contains("baseurl=http://mirrors.aliyun.com/centos-vault/7.9.2009/os/$basearch/")
    );
    // Only EL7 uses it.
    let deb = steps::plan(&inv, h, Family::Debian12).unwrap().render();
    assert!(!deb.contains("centos-vault"));

    let bad = format!("{SEED}\n[os]\nmirror = \"x\"\n");
    let err = Inventory::parse(&bad, "lab.toml").unwrap_err().to_string();
    assert!(err.contains("unknown field `mirror`"), "{err}");
}

/// Whether byte offset `at` of a POSIX shell command line lies inside single quotes (a
/// small lexer: backslash escapes outside single quotes, double quotes do not protect `$`).
fn single_quoted_at(cmd: &str, at: usize) -> bool {
    #[derive(PartialEq)]
    enum S {
        Plain,
        Single,
        Double,
    }
    let mut state = S::Plain;
    let mut escaped = false;
    for (i, c) in cmd.char_indices() {
        if i == at {
            return state == S::Single;
        }
        if escaped {
            escaped = false;
            continue;
        }
        match (&state, c) {
            (S::Plain, '\'') => state = S::Single,
            (S::Single, '\'') => state = S::Plain,
            (S::Plain, '"') => state = S::Double,
            (S::Double, '"') => state = S::Plain,
            (S::Plain | S::Double, '\\') => escaped = true,
            _ => {}
        }
    }
    false
}

/// Every shell command line of a plan, checks included.
fn commands(plan: &provision::plan::Plan) -> Vec<String> {
    use provision::plan::Action;
    let mut out = Vec::new();
    for step in &plan.steps {
        for a in &step.actions {
            match a {
                Action::File { validate, .. } => out.extend(validate.clone()),
                Action::Binary { .. } => {}
                Action::Ensure { check, apply, .. } => {
                    out.push(check.command());
                    out.push(apply.clone());
                }
                Action::OnChange { command } | Action::Assert { command, .. } => {
                    out.push(command.clone())
                }
                Action::Address(a) => {
                    out.push(a.apply.clone());
                    out.push(a.live_check.command());
                    if let Some(p) = &a.prepare {
                        out.push(p.check.command());
                        out.push(p.command.clone());
                    }
                }
            }
        }
    }
    out
}

/// An interface name full of shell syntax (the inventory refuses it; this is the second line
/// of defence): in every command of every family's plan it only ever appears single-quoted,
/// and the files that carry it read it back as one value.
#[test]
fn hostile_interface_name_is_quoted_everywhere() {
    let inv = Inventory::parse(SEED, "lab.toml").unwrap();
    let evil = "e$(id>pwn)`x`;\"";
    for fam in Family::ALL {
        for name in ["server1", "server3"] {
            let mut h = inv.host(name).unwrap().clone();
            h.interface = evil.into();
            let plan = steps::plan(&inv, &h, fam).unwrap();
            for cmd in commands(&plan) {
                for (at, _) in cmd.match_indices("id>pwn") {
                    assert!(
                        single_quoted_at(&cmd, at),
                        "{fam} {name}: unquoted in {cmd}"
                    );
                }
            }
        }
    }
}
