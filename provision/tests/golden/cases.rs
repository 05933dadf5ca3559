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

/// The `[bgp]` section that turns the seed's lab.toml into anycast mode.
pub const ANYCAST_BGP: &str = "\n[bgp]\nmode = \"anycast\"\nlocal_asn = 65001\nrouter = \"172.16.249.1\"\nrouter_asn = 65000\n";

/// Anycast mode's cases: a balancer on Debian 12 and on EL9, and EL7's refusal.
pub const ANYCAST_CASES: &[(Family, &str)] = &[
    (Family::Debian12, "server1"),
    (Family::El9, "server2"),
    (Family::El7, "server1"),
];

/// The golden file of an anycast case.
pub fn anycast_path(family: Family, host: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("anycast-{}-{host}.plan", family.name()))
}

/// The plan text of an anycast case, or the refusal a plan ends with.
pub fn render_anycast(family: Family, host: &str) -> String {
    let text = format!("{SEED}{ANYCAST_BGP}");
    let inv = Inventory::parse(&text, "lab.toml").expect("lab.toml with [bgp]");
    let h = inv.host(host).expect("host").clone();
    match steps::plan(&inv, &h, family) {
        Ok(plan) => plan.render(),
        Err(e) => format!("# plan for {host} on {family} refused:\n{e}\n"),
    }
}

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
