//! What happens instead of keepalived directives vrrp has no key for.

const INSTEAD: &[(&str, &str)] = &[
    (
        "notification_email",
        "no e-mail is sent; notify_master/backup/fault scripts run on changes",
    ),
    (
        "notification_email_from",
        "no e-mail is sent; notify_master/backup/fault scripts run on changes",
    ),
    (
        "smtp_server",
        "no e-mail is sent; notify_master/backup/fault scripts run on changes",
    ),
    (
        "smtp_connect_timeout",
        "no e-mail is sent; notify_master/backup/fault scripts run on changes",
    ),
    (
        "smtp_alert",
        "no e-mail is sent; notify_master/backup/fault scripts run on changes",
    ),
    (
        "vrrp_skip_check_adv_addr",
        "every advertisement's address list is checked against ours",
    ),
    (
        "vrrp_strict",
        "vrrp does not enforce RFC-strict mode (no iptables rules, PASS auth allowed)",
    ),
    (
        "vrrp_garp_interval",
        "gratuitous ARPs go out 5 times, 100 ms apart, on becoming master",
    ),
    (
        "vrrp_gna_interval",
        "unsolicited NAs go out 5 times, 100 ms apart, on becoming master",
    ),
    (
        "vrrp_garp_master_delay",
        "gratuitous ARPs go out 5 times, 100 ms apart, on becoming master",
    ),
    (
        "vrrp_garp_master_repeat",
        "gratuitous ARPs go out 5 times, 100 ms apart, on becoming master",
    ),
    (
        "vrrp_garp_master_refresh",
        "gratuitous ARPs are sent only on becoming master",
    ),
    (
        "garp_master_delay",
        "gratuitous ARPs go out 5 times, 100 ms apart, on becoming master",
    ),
    (
        "garp_master_repeat",
        "gratuitous ARPs go out 5 times, 100 ms apart, on becoming master",
    ),
    (
        "garp_master_refresh",
        "gratuitous ARPs are sent only on becoming master",
    ),
    (
        "garp_master_refresh_repeat",
        "gratuitous ARPs are sent only on becoming master",
    ),
    (
        "script_user",
        "scripts run as the user vrrp runs as (root under deploy/vrrp.service)",
    ),
    (
        "enable_script_security",
        "vrrp does not check who can write the scripts it runs",
    ),
    (
        "vrrp_sync_group",
        "instances fail over one by one, not as a group",
    ),
    (
        "virtual_server",
        "LVS load balancing is not supported; the proxy balances HTTP (proxy import)",
    ),
    (
        "virtual_server_group",
        "LVS load balancing is not supported; the proxy balances HTTP (proxy import)",
    ),
    ("lvs_id", "LVS is not supported"),
    ("lvs_sync_daemon", "LVS is not supported"),
    ("lvs_sync_daemon_interface", "LVS is not supported"),
    (
        "bfd_instance",
        "BFD is not supported; use a vrrp_script to track the peer",
    ),
    (
        "track_bfd",
        "BFD is not supported; use a vrrp_script to track the peer",
    ),
    (
        "static_ipaddress",
        "the addresses are not configured; configure them with the system's network setup",
    ),
    (
        "static_routes",
        "the routes are not configured; configure them with the system's network setup",
    ),
    (
        "static_rules",
        "the rules are not configured; configure them with the system's network setup",
    ),
    (
        "virtual_ipaddress_excluded",
        "these addresses are not added on becoming master (they were never in adverts)",
    ),
    ("virtual_routes", "routes are not added on becoming master"),
    ("virtual_rules", "rules are not added on becoming master"),
    (
        "vrrp_track_process",
        "processes are not tracked; track them with a vrrp_script",
    ),
    (
        "track_process",
        "processes are not tracked; track them with a vrrp_script",
    ),
    (
        "vrrp_track_file",
        "files are not tracked; track them with a vrrp_script",
    ),
    (
        "track_file",
        "files are not tracked; track them with a vrrp_script",
    ),
    ("notify_stop", "no script runs when vrrp stops"),
    (
        "notify_deleted",
        "no script runs when an instance is deleted",
    ),
    (
        "dont_track_primary",
        "the instance's own interface is always tracked (link down = FAULT)",
    ),
    (
        "use_vmac",
        "no virtual MAC: the VIPs use the interface's own MAC (gratuitous ARP moves them)",
    ),
    (
        "vmac_xmit_base",
        "no virtual MAC: the VIPs use the interface's own MAC",
    ),
    (
        "mcast_src_ip",
        "adverts are sent from the interface's primary address",
    ),
    ("native_ipv6", "IPv6 instances use version = 3"),
    ("debug", "logging is set with RUST_LOG"),
    ("enable_traps", "no SNMP"),
    ("enable_snmp_vrrp", "no SNMP; status is at `vrrp status`"),
    (
        "max_auto_priority",
        "scheduling priority is set by the systemd unit",
    ),
    (
        "vrrp_priority",
        "scheduling priority is set by the systemd unit",
    ),
    ("vrrp_no_swap", "memory locking is set by the systemd unit"),
    (
        "vrrp_rlimit_rttime",
        "real-time limits are set by the systemd unit",
    ),
    ("process_names", "the process is vrrp"),
    (
        "state_file",
        "state is in RUNTIME_DIR/status (`vrrp status`)",
    ),
];

pub(super) fn instead(name: &str) -> &'static str {
    if let Some((_, why)) = INSTEAD.iter().find(|(n, _)| *n == name) {
        return why;
    }
    if name.starts_with('$') || name.starts_with('@') || name.starts_with('~') {
        return "keepalived's parameter substitution is not supported; the line is ignored";
    }
    if name.starts_with("lvs_") || name.starts_with("checker_") || name.starts_with("lvs") {
        return "LVS is not supported";
    }
    if name.starts_with("vrrp_") || name.starts_with("garp_") {
        return "ignored; vrrp has no equivalent setting";
    }
    "ignored; vrrp has no equivalent"
}
