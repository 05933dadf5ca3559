//! The roles: Apache httpd on the backends; `proxy` and `vrrp` on the balancers (the seed's
//! nginx and keepalived), and the check that the VIPs answer.

use std::fmt::Write as _;

use crate::check::Check;
use crate::inventory::{Host, Inventory};
use crate::os::Family;
use crate::plan::{Action, Step};
use crate::quote::shell_quote;
use crate::render::{self, RenderError, PROXY_ADMIN};
use crate::units;

use super::system::{package, service_running};

pub(super) fn httpd(host: &Host, family: Family) -> Step {
    let unit = family.httpd();
    let page = host.page.clone().unwrap_or_default();
    let step = package(Step::new("httpd"), family, unit).file(
        "/var/www/html/index.html",
        render::index_html(host).unwrap_or_default(),
        0o644,
    );
    service_running(step, unit).assert(
        "httpd serves the page",
        &format!(
            "for i in $(seq 50); do curl -fsS -m 1 http://{}/ 2>/dev/null | grep -qF {} && exit 0; sleep 0.2; done; echo 'no page on port 80' >&2; exit 1",
            host.address,
            shell_quote(&page)
        ),
    )
}

/// SELinux labels of the deployed files (bin_t for binaries under /usr/local/bin, etc_t for
/// configs): a file created by `mv` from /var/tmp keeps its tmp label unless relabelled.
pub(super) fn selinux_labels(step: Step, family: Family, paths: &[&str]) -> Step {
    if !family.is_el() {
        return step;
    }
    let quoted: Vec<String> = paths.iter().map(|p| shell_quote(p)).collect();
    step.ensure(
        "SELinux labels",
        Check::LabelsCorrect(paths.iter().map(|p| p.to_string()).collect()),
        &format!("restorecon -v {}", quoted.join(" ")),
    )
}

/// One daemon on a balancer: binary, config validated on the host, unit; restarted only when
/// one of them changed. The units are deploy/'s rendered for the host's systemd
/// ([`crate::units`]).
struct Daemon<'a> {
    name: &'a str,
    bin: &'a str,
    config_path: &'a str,
    config: String,
    /// 0644, or 0600 for a config holding a secret (read by root only).
    config_mode: u32,
    /// The config key whose value is a secret (masked in plans and diffs).
    secret: Option<&'a str>,
    unit_path: &'a str,
    unit: String,
    /// What the unit needs from provision on an old systemd (user, directories, capability).
    setup: fn(Step) -> Step,
}

fn daemon(d: Daemon<'_>, family: Family, health: Option<(&str, String)>) -> Step {
    let Daemon {
        name,
        bin,
        config_path,
        config,
        config_mode,
        secret,
        unit_path,
        unit,
        setup,
    } = d;
    let mut step = Step::new(name).push(Action::Binary {
        name: name.into(),
        path: bin.to_string(),
        mode: 0o755,
    });
    step.serial = true;
    step = setup(step);
    step = step.validated_file(
        config_path,
        config,
        config_mode,
        &format!("{bin} --check --config {{}}"),
    );
    if let Some(key) = secret {
        step = step.secret(key);
    }
    step = step.file(unit_path, unit, 0o644);
    step = selinux_labels(step, family, &[bin, config_path, unit_path]);
    step = step
        .on_change("systemctl daemon-reload")
        .on_change(&format!("systemctl restart {name}"));
    step = service_running(step, name);
    if let Some((what, cmd)) = health {
        step = step.assert(what, &cmd);
    }
    step
}

/// What DynamicUser, LogsDirectory, CacheDirectory, StateDirectory and AmbientCapabilities do
/// on a current systemd, done by provision for an older one: a static system user, its log
/// directory, the directory the proxy buffers large request bodies in, the one it keeps its
/// state file in, and the capability to bind port 80 as a file capability of the binary (after
/// the binary: installing it drops it).
fn proxy_setup_for_old_systemd(step: Step) -> Step {
    let user = units::PROXY_USER;
    let bin = render::PROXY_BIN_PATH;
    let mut step = step.ensure(
        &format!("system user {user}"),
        Check::UserExists(user.into()),
        &format!(
            "useradd --system --no-create-home --home-dir / --shell /sbin/nologin {}",
            shell_quote(user)
        ),
    );
    for (what, dir) in [
        ("log directory", render::PROXY_LOG_DIR),
        ("request body directory", render::PROXY_CACHE_DIR),
        ("state directory", render::PROXY_STATE_DIR),
    ] {
        step = step.ensure(
            &format!("{what} {dir}"),
            Check::DirOwned {
                path: dir.into(),
                owner: user.into(),
                mode: "750".into(),
            },
            &format!(
                "install -d -o {u} -g {u} -m 0750 {}",
                shell_quote(dir),
                u = shell_quote(user)
            ),
        );
    }
    step.ensure(
        "proxy may bind port 80",
        Check::FileCapability {
            path: bin.into(),
            cap: "cap_net_bind_service".into(),
        },
        &format!("setcap cap_net_bind_service=+ep {}", shell_quote(bin)),
    )
}

/// The admin API's token, made on the host the first time (random, mode 0600) and kept after:
/// it never travels through provision, so no plan or diff shows it. `owner`: the static user
/// that must read it where systemd cannot hand it over (`LoadCredential=`); else root's.
fn admin_token(step: Step, owner: Option<&str>) -> Step {
    let path = shell_quote(render::PROXY_TOKEN_PATH);
    let chown = owner
        .map(|u| format!(" && chown {} {path}", shell_quote(u)))
        .unwrap_or_default();
    step.ensure(
        &format!("admin token {}", render::PROXY_TOKEN_PATH),
        Check::FileExists(render::PROXY_TOKEN_PATH.into()),
        &format!(
            "install -d -m 0755 /etc/proxy && (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > {path}.new && mv {path}.new {path}){chown}"
        ),
    )
}

pub(super) fn proxy(
    inv: &Inventory,
    host: &Host,
    family: Family,
    systemd: u32,
) -> Result<Step, RenderError> {
    let config = render::proxy_toml(inv, host)?;
    Ok(daemon(
        Daemon {
            name: "proxy",
            bin: render::PROXY_BIN_PATH,
            config_path: render::PROXY_CONFIG_PATH,
            config,
            config_mode: 0o644,
            secret: None,
            unit_path: render::PROXY_UNIT_PATH,
            unit: units::proxy_unit(systemd),
            setup: if units::proxy_static_user(systemd) {
                |s| admin_token(proxy_setup_for_old_systemd(s), Some(units::PROXY_USER))
            } else if units::proxy_needs_setup(systemd) {
                |s| admin_token(proxy_setup_for_old_systemd(s), None)
            } else {
                |s| admin_token(s, None)
            },
        },
        family,
        Some((
            "proxy healthy",
            format!(
                "for i in $(seq 50); do curl -fsS -m 1 -o /dev/null http://{PROXY_ADMIN}/healthz && exit 0; sleep 0.2; done; echo 'proxy /healthz does not answer' >&2; exit 1"
            ),
        )),
    ))
}

pub(super) fn vrrp(
    inv: &Inventory,
    host: &Host,
    family: Family,
    systemd: u32,
) -> Result<Step, RenderError> {
    let config = render::vrrp_toml(inv, host)?;
    Ok(daemon(
        Daemon {
            name: "vrrp",
            bin: render::VRRP_BIN_PATH,
            config_path: render::VRRP_CONFIG_PATH,
            config,
            // auth_pass: VRRP's shared password.
            config_mode: 0o600,
            secret: Some("auth_pass"),
            unit_path: render::VRRP_UNIT_PATH,
            unit: units::vrrp_unit(systemd),
            setup: |s| s,
        },
        family,
        None,
    ))
}

/// From the balancer: every VIP answers HTTP (whoever holds it). Allows for a VRRP election
/// (Master_Down_Interval is about 3.6 s with one-second adverts).
pub(super) fn vip_check(inv: &Inventory) -> Step {
    let mut cmd = String::new();
    for vip in &inv.network.vips {
        let _ = write!(
            cmd,
            "ok=; for i in $(seq 60); do curl -fsS -m 1 -o /dev/null http://{vip}/ && ok=1 && break; sleep 0.25; done; [ -n \"$ok\" ] || {{ echo 'VIP {vip} does not answer on port 80' >&2; exit 1; }}; "
        );
    }
    cmd.push_str("exit 0");
    let mut step = Step::new("vip check").assert("every VIP answers HTTP", &cmd);
    // Part of the balancer's turn: the next balancer starts only once the VIPs answer.
    step.serial = true;
    step
}
