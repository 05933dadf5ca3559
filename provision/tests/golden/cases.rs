// The golden plans: which OS family and host each file holds, and how its text is made.
// Shared by tests/golden.rs (compares, never writes) and examples/update_golden.rs (writes).

use std::path::PathBuf;

use provision::inventory::Inventory;
use provision::os::Family;
use provision::steps;

pub const SEED: &str = include_str!("../../../lab.toml");

/// (family, host); each is planned with the systemd its family ships: 219 for el7, 239 for
/// el8, 249 for ubuntu, 252 (current: deploy/'s units as they are) for el9 and debian12.
pub const CASES: &[(Family, &str)] = &[
    (Family::El7, "server1"),
    (Family::El7, "server3"),
    (Family::El8, "server1"),
    (Family::El8, "server3"),
    (Family::El9, "server2"),
    (Family::El9, "server4"),
    (Family::Debian12, "server1"),
    (Family::Debian12, "server3"),
    (Family::Ubuntu, "server2"),
    (Family::Ubuntu, "server4"),
];

/// The golden file of a case.
pub fn path(family: Family, host: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}-{host}.plan", family.name()))
}

/// The plan text of a case, as rendered now.
pub fn render(family: Family, host: &str) -> String {
    let mut inv = Inventory::parse(SEED, "lab.toml").expect("lab.toml");
    if family == Family::El7 {
        inv.os.el7_repo_baseurl = Some("https://vault.centos.org/7.9.2009".into());
    }
    let h = inv.host(host).expect("host").clone();
    steps::plan(&inv, &h, family).expect("plan").render()
}
