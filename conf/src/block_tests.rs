use super::*;

fn nginx(text: &str) -> Result<Parsed, ConfigError> {
    parse_str(
        text,
        Path::new("/etc/nginx/nginx.conf"),
        Dialect::Nginx,
        &NoFiles,
    )
}

fn keepalived(text: &str) -> Result<Parsed, ConfigError> {
    parse_str(
        text,
        Path::new("/etc/keepalived/keepalived.conf"),
        Dialect::Keepalived,
        &NoFiles,
    )
}

/// The tree as `name[args]{...}` text, for compact assertions.
fn shape(ds: &[Directive]) -> String {
    ds.iter()
        .map(|d| {
            let mut s = format!("{}{:?}@{}:{}", d.name, d.args, d.line, d.col);
            if let Some(b) = &d.block {
                s.push_str(&format!("{{{}}}", shape(b)));
            }
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn nginx_blocks_quotes_escapes_comments_and_variables() {
    let text = "worker_processes auto; # four\nhttp {\n  log_format main '$remote_addr \"$request\"'\n    \"a\\\"b\\\\c\";\n  server { listen 80; location / { proxy_pass http://u; } }\n  set $x ${host}x;\n  add_header X a#b;\n}\n";
    let p = nginx(text).unwrap();
    assert_eq!(
        shape(&p.directives),
        r#"worker_processes["auto"]@1:1 http[]@2:1{log_format["main", "$remote_addr \"$request\"", "a\"b\\c"]@3:3 server[]@5:3{listen["80"]@5:12 location["/"]@5:23{proxy_pass["http://u"]@5:36}} set["$x", "${host}x"]@6:3 add_header["X", "a#b"]@7:3}"#
    );
}

#[test]
fn nginx_errors_name_file_line_and_column() {
    let cases = [
        (
            "http {\n  listen 80\n}\n",
            "/etc/nginx/nginx.conf:3:1: unexpected \"}\"",
        ),
        (
            "http {\n",
            "/etc/nginx/nginx.conf:2:1: unexpected end of file, expecting \"}\"",
        ),
        (
            "a b",
            "/etc/nginx/nginx.conf:1:4: unexpected end of file, expecting \";\" or \"}\"",
        ),
        ("}", "/etc/nginx/nginx.conf:1:1: unexpected \"}\""),
        (";", "/etc/nginx/nginx.conf:1:1: unexpected \";\""),
        ("{", "/etc/nginx/nginx.conf:1:1: unexpected \"{\""),
        ("a \"b\"c;", "/etc/nginx/nginx.conf:1:6: unexpected \"c\""),
        (
            "a 'b;\n",
            "/etc/nginx/nginx.conf:1:3: unexpected end of file, expecting '",
        ),
        (
            "include a b;",
            "/etc/nginx/nginx.conf:1:1: invalid number of arguments in \"include\" directive",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(nginx(text).unwrap_err().to_string(), want, "{text:?}");
    }
}

#[test]
fn keepalived_lines_end_directives_and_braces_may_open_on_the_next_line() {
    let text = "! Configuration File\nglobal_defs {\n   router_id N1 # comment\n}\nvrrp_instance VI_1\n{\n    authentication {\n        auth_type PASS\n        auth_pass ab!cd\n    }\n    track_script { chk }\n    virtual_ipaddress {\n        10.0.0.1/24 dev eth0 label eth0:1\n    }\n    notify_master \"/bin/x master\"\n}\n";
    let p = keepalived(text).unwrap();
    assert_eq!(
        shape(&p.directives),
        r#"global_defs[]@2:1{router_id["N1"]@3:4} vrrp_instance["VI_1"]@5:1{authentication[]@7:5{auth_type["PASS"]@8:9 auth_pass["ab"]@9:9} track_script[]@11:5{chk[]@11:20} virtual_ipaddress[]@12:5{10.0.0.1/24["dev", "eth0", "label", "eth0:1"]@13:9} notify_master["/bin/x master"]@15:5}"#
    );
}

#[test]
fn keepalived_escapes_only_comment_characters_and_keeps_quoted_text() {
    let p = keepalived("auth_pass ab\\!c\\#d\\x\nscript \"/bin/x \\\"a\\\" !#\"\n").unwrap();
    assert_eq!(p.directives[0].args, ["ab!c#d\\x"]);
    assert_eq!(p.directives[1].args, ["/bin/x \\\"a\\\" !#"]);
}

#[test]
fn keepalived_errors() {
    let e = keepalived("vrrp_instance X {\n  priority 100\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/keepalived/keepalived.conf:3:1: unexpected end of file, expecting \"}\""
    );
    let e = keepalived("a\n}\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/keepalived/keepalived.conf:2:1: unexpected \"}\""
    );
}

#[test]
fn nesting_is_bounded() {
    let deep = "a {".repeat(MAX_NESTING + 5);
    let e = nginx(&deep).unwrap_err();
    assert!(e.message.contains("nested deeper"), "{e}");
    let ok = format!("{}{}", "a {".repeat(MAX_NESTING), "}".repeat(MAX_NESTING));
    assert!(nginx(&ok).is_ok());
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("conf-block-{tag}-{}", std::process::id()));
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

#[test]
fn nginx_includes_are_relative_to_the_main_file_and_globbed_in_order() {
    let dir = TempDir::new("nginx");
    let d = &dir.0;
    std::fs::create_dir_all(d.join("conf.d")).unwrap();
    std::fs::create_dir_all(d.join("snippets")).unwrap();
    std::fs::write(d.join("conf.d/b.conf"), "server { listen 81; }\n").unwrap();
    // Relative to the main file's directory, not to conf.d/ (nginx's prefix rule).
    std::fs::write(d.join("conf.d/a.conf"), "include snippets/s.conf;\n").unwrap();
    std::fs::write(d.join("snippets/s.conf"), "server { listen 80; }\n").unwrap();
    std::fs::write(
        d.join("nginx.conf"),
        "http {\n include conf.d/*.conf;\n include missing.conf;\n include none/*.conf;\n}\n",
    )
    .unwrap();
    let p = parse_file(&d.join("nginx.conf"), Dialect::Nginx, &FsFiles::default()).unwrap();
    let http = &p.directives[0];
    let listens: Vec<_> = http
        .children()
        .iter()
        .map(|s| (s.children()[0].args[0].clone(), s.file.clone()))
        .collect();
    assert_eq!(listens[0].0, "80");
    assert_eq!(&*listens[0].1, d.join("snippets/s.conf").as_path());
    assert_eq!(listens[1].0, "81");
    assert_eq!(p.files.len(), 4);
    assert_eq!(p.notes.len(), 1);
    assert_eq!(p.notes[0].line, 3);
    assert!(p.notes[0].message.contains("missing.conf"), "{:?}", p.notes);

    // A syntax error inside an included file names that file.
    std::fs::write(d.join("conf.d/b.conf"), "server {\n").unwrap();
    let e = parse_file(&d.join("nginx.conf"), Dialect::Nginx, &FsFiles::default()).unwrap_err();
    assert_eq!(e.file, d.join("conf.d/b.conf"));
    assert_eq!((e.line, e.col), (2, 1));

    // A file that includes itself stops at the depth limit.
    std::fs::write(d.join("loop.conf"), "include loop.conf;\n").unwrap();
    let e = parse_file(&d.join("loop.conf"), Dialect::Nginx, &FsFiles::default()).unwrap_err();
    assert!(e.message.contains("nested deeper"), "{e}");

    // Confined: files outside the directory count as missing.
    let confined = FsFiles {
        confine: Some(d.join("conf.d")),
    };
    assert!(parse_file(&d.join("nginx.conf"), Dialect::Nginx, &confined).is_err());
}

#[test]
fn keepalived_includes_are_relative_to_the_including_file() {
    let dir = TempDir::new("keepalived");
    let d = &dir.0;
    std::fs::create_dir_all(d.join("conf.d/more")).unwrap();
    std::fs::write(d.join("keepalived.conf"), "include conf.d/vi.conf\n").unwrap();
    std::fs::write(d.join("conf.d/vi.conf"), "include more/*.conf\n").unwrap();
    std::fs::write(d.join("conf.d/more/x.conf"), "vrrp_instance X {\n}\n").unwrap();
    let p = parse_file(
        &d.join("keepalived.conf"),
        Dialect::Keepalived,
        &FsFiles::default(),
    )
    .unwrap();
    assert_eq!(shape(&p.directives), "vrrp_instance[\"X\"]@1:1{}");
    assert!(p.notes.is_empty());
}

#[test]
fn source_text_is_one_line() {
    let p = nginx("add_header X-A \"a b\";").unwrap();
    assert_eq!(p.directives[0].source_text(), "add_header X-A \"a b\"");
}
