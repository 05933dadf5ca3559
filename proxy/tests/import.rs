//! `proxy import`: the seed's nginx.conf and provision's rendering of it come back as the
//! proxy.toml we deploy; the real binary's exit status, report and `--check`; the nginx corpus
//! against its golden reports.
//!
//! Goldens are rewritten only by `UPDATE_IMPORT_GOLDENS=1 cargo test -p proxy --test import`
//! (never by a normal run, which compares).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use conf::block::FsFiles;
use proxy::config::{self, Config};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus() -> PathBuf {
    repo().join("tests/corpus/nginx").canonicalize().unwrap()
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("proxy-import-{tag}-{}", std::process::id()));
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

/// Imports `path` with includes confined to its directory (so the machine's /etc does not
/// change the result) and validates the output.
fn import(path: &Path) -> (Config, conf::import::Imported) {
    let files = FsFiles {
        confine: path.parent().map(Path::to_path_buf),
    };
    let imported = proxy::import::nginx(path, &files).unwrap();
    let cfg = config::parse(&imported.toml, Path::new("imported.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{}", imported.toml));
    (cfg, imported)
}

/// Field-by-field equality except where the file came from (its path and the digest of its
/// text) and the access log path (nginx's is /var/log/nginx/access.log, ours
/// /var/log/proxy/access.log: both are kept as written).
fn assert_equivalent(mut imported: Config, mut ours: Config) {
    assert_eq!(
        imported.access_log.as_deref(),
        Some(Path::new("/var/log/nginx/access.log"))
    );
    imported.source = PathBuf::new();
    ours.source = PathBuf::new();
    imported.sha256.clear();
    ours.sha256.clear();
    imported.access_log = None;
    ours.access_log = None;
    // The control API's token and server-state files have no nginx counterpart: provision
    // renders them for its balancers, an import cannot know where they are.
    ours.admin_token_file = None;
    ours.state_file = None;
    assert_eq!(imported, ours);
}

#[test]
fn seed_nginx_conf_imports_to_deploy_proxy_toml() {
    let (cfg, imported) = import(&corpus().join("seed.conf"));
    let deploy = config::load(&repo().join("deploy/proxy.toml")).unwrap();
    assert_equivalent(cfg, deploy);
    // What the seed does that the proxy does not: a static /40x.html (and nginx's 404 page),
    // and mime.types is outside the corpus directory.
    let report = imported.report();
    assert_eq!(imported.exit_code(), 3);
    assert!(
        report.contains("seed.conf:20: directive \"include\" is not supported"),
        "{report}"
    );
    assert!(report.contains("seed.conf:38: directive \"location\" is not supported: static content is not served; requests for /40x.html are proxied by location \"/\""), "{report}");
    assert_eq!(report.lines().count(), 3, "{report}");
    // Every dropped directive is marked in the file too.
    assert_eq!(imported.toml.matches("# NOT IMPORTED ").count(), 3);
}

#[test]
fn provision_rendered_nginx_conf_imports_back_to_rendered_proxy_toml() {
    let inv = provision::inventory::Inventory::load(&repo().join("lab.toml")).unwrap();
    let dir = TempDir::new("render");
    for host in inv.balancers() {
        let nginx = provision::render_seed::nginx_conf(&inv, host).unwrap();
        let path = dir.0.join(format!("{}.nginx.conf", host.name));
        std::fs::write(&path, nginx).unwrap();
        let (mut cfg, imported) = import(&path);
        let ours = provision::render::proxy_toml(&inv, host).unwrap();
        let ours = config::parse(&ours, Path::new("rendered.toml")).unwrap();
        // nginx has no self-sizing pool: the seed's nginx.conf gets a fixed `keepalive N`
        // where our proxy.toml leaves `keepalive` at its default, "auto".
        let n = provision::render_seed::PROXY_DEFAULT_KEEPALIVE as usize;
        assert_eq!(cfg.upstreams[0].keepalive, config::Keepalive::Max(n));
        assert_eq!(ours.upstreams[0].keepalive, config::Keepalive::Auto);
        cfg.upstreams[0].keepalive = config::Keepalive::Auto;
        assert_equivalent(cfg, ours);
        // Only /etc/nginx/mime.types (outside the confined directory) is reported.
        assert_eq!(imported.losses.len(), 1, "{}", imported.report());
        assert_eq!(imported.losses[0].directive, "include");
    }
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
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
fn the_binary_exits_0_3_1_and_its_output_passes_check() {
    let dir = TempDir::new("cli");
    let d = &dir.0;
    let full = d.join("full.conf");
    std::fs::write(
        &full,
        "worker_processes 2;\nevents { worker_connections 512; }\nhttp {\n  upstream app {\n    least_conn;\n    server 127.0.0.1:8081 weight=3 max_fails=2 fail_timeout=5s slow_start=30s;\n    server 127.0.0.1:8082 backup;\n    keepalive 16;\n  }\n  proxy_read_timeout 30s;\n  server {\n    listen 127.0.0.1:18080 default_server;\n    client_max_body_size 10m;\n    location / { proxy_pass http://app; proxy_set_header Host $host; proxy_set_header X-Real-IP $remote_addr; }\n    location /api/ { proxy_pass http://127.0.0.1:9000; }\n  }\n}\n",
    )
    .unwrap();
    let out = d.join("full.toml");
    let (code, stdout, stderr) = run(&[
        "import",
        full.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.is_empty() && stderr.is_empty(), "{stdout}{stderr}");
    let (code, stdout, stderr) = run(&["--check", "--config", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let cfg = config::load(&out).unwrap();
    assert_eq!(cfg.workers, config::Workers::Count(2));
    assert_eq!(
        cfg.worker_connections, 512,
        "events {{ worker_connections }} carried over"
    );
    let app = &cfg.upstreams[0];
    assert_eq!(app.balance, config::Balance::LeastConn);
    assert_eq!((app.servers[0].weight, app.servers[0].max_fails), (3, 2));
    assert_eq!(app.servers[0].fail_timeout.as_secs(), 5);
    assert_eq!(app.servers[0].slow_start.as_secs(), 30);
    assert!(app.servers[1].backup);
    assert_eq!(app.keepalive, config::Keepalive::Max(16));
    assert_eq!(app.read_timeout.as_secs(), 30);
    assert_eq!(cfg.upstreams[1].name, "127.0.0.1:9000");
    assert_eq!(cfg.servers[0].client_max_body_size, 10 << 20);
    assert_eq!(cfg.servers[0].locations[1].path, "/api/");

    // Losses: exit 3, the report on stderr, the TOML on stdout still passes --check.
    let lossy = d.join("lossy.conf");
    std::fs::write(
        &lossy,
        "http {\n  gzip on;\n  server {\n    listen 18081 ssl;\n    listen 18082;\n    location ~ \\.php$ { proxy_pass http://127.0.0.1:9001; }\n    location / { proxy_pass http://127.0.0.1:9002; rewrite ^ /x; }\n  }\n}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["import", lossy.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    let l = lossy.display();
    let want = format!(
        "{l}:2: directive \"gzip\" is not supported: responses are passed through uncompressed, as the upstream sends them\n\
         {l}:4: directive \"listen\" is not supported: TLS is not terminated: this listen is left out; put a TLS terminator in front of the proxy\n\
         {l}:6: directive \"location\" is not supported: only prefix locations are supported (\"~ \\.php$\" is a regular expression or named location); requests it matched go to the longest matching prefix location\n\
         {l}:7: directive \"rewrite\" is not supported: request URIs are passed to the upstream unchanged\n\
         proxy import: 4 directive(s) not carried over (listed above, and as comments in the output)\n"
    );
    assert_eq!(stderr, want);
    assert_eq!(stdout.matches("# NOT IMPORTED ").count(), 4, "{stdout}");
    let lossy_toml = d.join("lossy.toml");
    std::fs::write(&lossy_toml, &stdout).unwrap();
    let (code, _, stderr) = run(&["--check", "--config", lossy_toml.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");

    // Unreadable: exit 1, nothing written; a syntax error names file:line:col.
    let (code, stdout, stderr) = run(&["import", d.join("missing.conf").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("missing.conf: cannot read config file"),
        "{stderr}"
    );
    let bad = d.join("bad.conf");
    std::fs::write(&bad, "http {\n  server {\n    listen 80\n  }\n}\n").unwrap();
    let (code, _, stderr) = run(&["import", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!("{}:4:3: unexpected \"}}\"", bad.display())),
        "{stderr}"
    );

    // The flag CLI is unchanged next to the subcommand.
    let (code, stdout, _) = run(&["-t", "--config", out.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("test is successful"));
}

/// The imported file does not only pass `--check`: the proxy runs with it and balances over the
/// nginx upstream's servers, logging in nginx's "main" format.
#[test]
fn an_imported_config_serves_traffic() {
    let a = common::Backend::page("node A\n");
    let b = common::Backend::page("node B\n");
    let dir = common::temp_dir("import-run");
    let (port, admin) = (common::free_port(), common::free_port());
    let log = dir.join("access.log");
    let nginx = format!(
        "worker_processes 1;\nevents {{ worker_connections 64; }}\nhttp {{\n    access_log {} main;\n    upstream app {{ server {}; server {}; }}\n    server {{\n        listen 127.0.0.1:{port};\n        location / {{ proxy_pass http://app; proxy_set_header Host $host; }}\n    }}\n}}\n",
        log.display(),
        a.addr,
        b.addr
    );
    let src = dir.join("nginx.conf");
    std::fs::write(&src, nginx).unwrap();
    let (code, toml, stderr) = run(&["import", src.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    // The imported admin address is fixed (127.0.0.1:9900); tests share the machine's loopback.
    let toml = toml.replace("127.0.0.1:9900", &format!("127.0.0.1:{admin}"));
    let config = dir.join("proxy.toml");
    std::fs::write(&config, toml).unwrap();
    let p = common::Proxy::spawn(config, dir, port, admin, &[]);
    let mut bodies: Vec<String> = (0..2).map(|_| p.get("/").text()).collect();
    bodies.sort();
    assert_eq!(bodies, ["node A\n", "node B\n"]);
    // The access log is written by its own thread: wait for both lines.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut log = p.access_log();
    while log.lines().count() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        log = p.access_log();
    }
    assert_eq!(log.lines().count(), 2, "{log}");
    assert!(log.contains("\"GET / HTTP/1.1\" 200 7"), "{log}");
}

/// Every corpus file: the report and exit status match the golden file, and the output
/// validates (host names that do not resolve in this sandbox aside).
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
    assert!(files.len() >= 20, "corpus has {} nginx files", files.len());
    let mut failures = Vec::new();
    for path in &files {
        let files = FsFiles {
            confine: Some(dir.clone()),
        };
        let got = match proxy::import::nginx(path, &files) {
            Ok(imported) => {
                if let Err(errors) = config::parse(&imported.toml, path) {
                    let real: Vec<_> = errors
                        .0
                        .iter()
                        .filter(|e| !e.message.contains("resolve"))
                        .collect();
                    assert!(
                        real.is_empty(),
                        "{}: {errors}\n{}",
                        path.display(),
                        imported.toml
                    );
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

#[test]
fn nginx_plus_queue_is_carried_over_when_a_server_has_max_conns() {
    let dir = TempDir::new("queue");
    let d = &dir.0;
    let conf = d.join("plus.conf");
    std::fs::write(
        &conf,
        "http {\n  upstream app {\n    zone app 64k;\n    server 127.0.0.1:8081 max_conns=8;\n    queue 100 timeout=70s;\n  }\n  upstream other {\n    server 127.0.0.1:8082;\n    queue 10;\n  }\n  server {\n    listen 127.0.0.1:18083;\n    location / { proxy_pass http://app; }\n    location /o/ { proxy_pass http://other; }\n  }\n}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["import", conf.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    let c = conf.display();
    assert!(
        stderr.contains(&format!(
            "{c}:9: directive \"queue\" is not supported: no server has max_conns"
        )),
        "{stderr}"
    );
    // With a zone nginx counts max_conns across its workers, as this proxy always does:
    // nothing to report. Without one it counts per worker process: the operator must hear it.
    assert!(!stderr.contains(&format!("{c}:3:")), "{stderr}");
    let (code, _, stderr) = {
        let plain = d.join("oss.conf");
        std::fs::write(
            &plain,
            "http {\n  upstream app {\n    server 127.0.0.1:8081 max_conns=8;\n  }\n  server {\n    listen 127.0.0.1:18084;\n    location / { proxy_pass http://app; }\n  }\n}\n",
        )
        .unwrap();
        run(&["import", plain.to_str().unwrap()])
    };
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("oss.conf:2: directive \"upstream\" is not supported: max_conns is counted across all workers here"),
        "{stderr}"
    );
    let toml = d.join("plus.toml");
    std::fs::write(&toml, &stdout).unwrap();
    let (code, _, stderr) = run(&["--check", "--config", toml.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let cfg = config::load(&toml).unwrap();
    let app = &cfg.upstreams[0];
    assert_eq!((app.queue, app.queue_timeout.as_secs()), (100, 70));
    assert_eq!(app.servers[0].max_conns, 8);
    assert_eq!(cfg.upstreams[1].queue, 0);
}
