//! Golden tests: each OS family's full plan (every command and file) for the repository's lab.toml.
//! Pure: no SSH. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test -p provision --test golden` and review the diff.

use std::path::PathBuf;

use provision::inventory::Inventory;
use provision::os::Family;
use provision::steps;

const SEED: &str = include_str!("../../lab.toml");

fn golden(family: Family, host: &str) {
    let mut inv = Inventory::parse(SEED, "lab.toml").unwrap();
    if family == Family::El7 {
        inv.os.el7_repo_baseurl = Some("https://vault.centos.org/7.9.2009".into());
    }
    let h = inv.host(host).unwrap().clone();
    let text = steps::plan(&inv, &h, family).unwrap().render();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}-{host}.plan", family.name()));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if want != text {
        let d = provision::diff::unified(&path.display().to_string(), Some(&want), &text);
        panic!("plan differs from {}:\n{d}", path.display());
    }
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
                assert_eq!(serial, ["proxy", "vrrp"]);
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
