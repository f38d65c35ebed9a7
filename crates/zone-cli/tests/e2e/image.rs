//! The image's start script and export script, run as the zone and a provider would run them: the
//! start script under an empty environment (`env -i`), the export script against a stand-in
//! container engine (a shell script that records its calls and writes an exported tar), since CI has
//! no container engine.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The image's binary, `zone-programd`, built beside the developer CLI (`cargo test --workspace`
/// builds it; alone: `cargo build -p zone-program --bin zone-programd`).
fn image_binary() -> std::path::PathBuf {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_zone-program")).with_file_name("zone-programd");
    assert!(bin.exists(), "{} is missing: run `cargo build -p zone-program --bin zone-programd`", bin.display());
    bin
}

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// `/opt/zone-program` in miniature: bin/zone-programd, bin/start.sh, config.toml.
fn install(config: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join("bin")).unwrap();
    std::os::unix::fs::symlink(image_binary(), home.path().join("bin/zone-programd")).unwrap();
    std::fs::copy(repo().join("scripts/start.sh"), home.path().join("bin/start.sh")).unwrap();
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    home
}

/// `env -i /bin/sh <home>/bin/start.sh`: no PATH, no HOME, nothing.
fn start_script(home: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/env");
    cmd.arg("-i").arg("/bin/sh").arg(home.join("bin/start.sh")).current_dir("/");
    cmd
}

#[test]
fn the_start_script_under_an_empty_environment_refuses_a_broken_config_and_says_what_to_fix() {
    let home = install("[server]\nlisten = \"127.0.0.1:0\"\n[store]\nnotify_ttl_secs = 9000\n");
    let out = start_script(home.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("FAIL  config:") && stdout.contains("store.notify_ttl_secs"), "{stdout}");
    assert!(stdout.contains("fix: correct `store.notify_ttl_secs`"), "{stdout}");
    assert!(stderr.contains("start.sh: the preflight failed; the program is not started"), "{stderr}");
    assert!(!home.path().join("data").exists(), "nothing ran past the failed preflight");
}

#[test]
fn the_start_script_under_an_empty_environment_serves_from_its_own_directory() {
    let home = install("[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"data/store.sqlite\"\n");
    let (preflight, health) = serve_once(home.path());
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(preflight.contains("preflight passed"), "{preflight}");
    assert!(home.path().join("data").is_dir(), "relative paths resolve in the install directory");
}

/// The native layout of the image, built as the Dockerfile builds it: the shim compiled by
/// `native/build.sh --sdk-dir` against a vendor SDK (here the stub SDK's header and library stand in
/// for it) into `lib/`, the vendor library beside it.
#[test]
fn the_start_script_serves_the_native_backend_laid_out_as_in_the_image() {
    if !crate::backend::native_available() {
        return;
    }
    let vendor = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("native/stub-sdk/cpp_sdk.h"), vendor.path().join("cpp_sdk.h")).unwrap();
    std::fs::copy(crate::backend::stub_sdk_path(), vendor.path().join("libWeWorkSpecSDK.so")).unwrap();
    let home = install(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"data/store.sqlite\"\n\
         [sdk]\nbackend = \"native\"\n[sdk.native]\nlibrary = \"lib/libzone_shim.so\"\nlog_to_sdk = false\n",
    );
    let lib = home.path().join("lib");
    let built = Command::new(repo().join("native/build.sh"))
        .arg("--sdk-dir")
        .arg(vendor.path())
        .arg("--out")
        .arg(&lib)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    std::fs::copy(vendor.path().join("libWeWorkSpecSDK.so"), lib.join("libWeWorkSpecSDK.so")).unwrap();
    drop(vendor); // from now on the vendor library is found in lib/ only, as in the image

    let (preflight, health) = serve_once(home.path());
    assert!(preflight.contains("ok    sdk: lib/libzone_shim.so loads"), "{preflight}");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    std::fs::remove_file(lib.join("libWeWorkSpecSDK.so")).unwrap();
    let out = start_script(home.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  sdk: cannot load the native SDK shim") && stdout.contains("libWeWorkSpecSDK.so"));
}

/// Runs the start script under an empty environment until the program listens; returns the
/// preflight's output and the answer to `GET /healthz`, then stops the program.
fn serve_once(home: &Path) -> (String, String) {
    let mut child = start_script(home).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out);
            panic!("the program did not log where it listens; preflight: {out}");
        };
        let line = strip_ansi(&line);
        if let Some(rest) = line.split("addr=").nth(1).filter(|_| line.contains("listening")) {
            break rest.split_whitespace().next().unwrap().trim_matches('"').to_owned();
        }
    };
    let health = http_get(&addr, "/healthz");
    let _ = child.kill();
    let _ = child.wait();
    let mut preflight = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut preflight).unwrap();
    (preflight, health)
}

/// A plain HTTP/1.1 GET; the whole response as text.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The text of a log line without terminal colour sequences.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A stand-in container engine: records every call in `engine.log`, lists the files of each
/// `--build-context`, reports `FAKE_PLATFORM` as the image platform, and exports a tar with the
/// image layout.
fn fake_engine(dir: &Path, platform: &str) -> PathBuf {
    let path = dir.join("fake-engine");
    let log = dir.join("engine.log");
    let script = format!(
        r#"#!/bin/bash
set -eu
echo "$*" >> '{log}'
case "$1" in
  info|rm) exit 0 ;;
  build)
    for a in "$@"; do
      case "$a" in *=/*) echo "context ${{a%%=*}}: $(cd "${{a#*=}}" && ls | tr '\n' ' ')" >> '{log}' ;; esac
    done ;;
  image) echo '{platform}' ;;
  create) echo fake-container-id ;;
  export)
    root="$(mktemp -d)"
    mkdir -p "$root/opt/zone-program/bin" "$root/opt/zone-program/lib" "$root/usr/bin"
    touch "$root/opt/zone-program/bin/zone-programd" "$root/opt/zone-program/bin/start.sh" \
      "$root/opt/zone-program/config.toml" "$root/usr/bin/sh" \
      "$root/opt/zone-program/lib/libzone_shim.so" "$root/opt/zone-program/lib/libWeWorkSpecSDK.so"
    tar -cf "$3" -C "$root" . ;;
  *) echo "unexpected engine call: $*" >&2; exit 99 ;;
esac
"#,
        log = log.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// A vendor SDK archive (placeholder files in a nested folder) and its SHA-256.
fn sdk_archive(dir: &Path) -> (PathBuf, String) {
    let pkg = dir.join("pkg/cpp_sdk_1.0/lib");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("libWeWorkSpecSDK.so"), "not really a library").unwrap();
    std::fs::write(pkg.parent().unwrap().join("cpp_sdk.h"), "// header").unwrap();
    let archive = dir.join("sdk.tar.gz");
    let ok = Command::new("tar").arg("-czf").arg(&archive).arg("-C").arg(dir.join("pkg")).arg(".").status().unwrap();
    assert!(ok.success());
    let sum = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&archive).unwrap()));
    (archive, sum)
}

struct Export {
    dir: tempfile::TempDir,
    engine: PathBuf,
}

impl Export {
    fn new(platform: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("deploy")).unwrap();
        std::fs::copy(repo().join("deploy/config.zone.example.toml"), dir.path().join("deploy/config.toml")).unwrap();
        let engine = fake_engine(dir.path(), platform);
        Self { dir, engine }
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(repo().join("scripts/export-image.sh"))
            .args(["--deploy", &self.path("deploy"), "--tag", "zp:test", "--out", &self.path("out/zp.tar")])
            .args(args)
            .env("CONTAINER_ENGINE", &self.engine)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
    }

    fn path(&self, rel: &str) -> String {
        self.dir.path().join(rel).display().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }
}

#[test]
fn the_export_script_verifies_the_sdk_builds_for_amd64_exports_and_prints_the_form_fields() {
    let e = Export::new("linux/amd64");
    let (archive, sum) = sdk_archive(e.dir.path());
    let (code, stdout, stderr) = e.run(&["--sdk-archive", &archive.display().to_string(), "--sdk-sha256", &sum]);
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let log = e.log();
    assert!(log.contains("build --platform linux/amd64"), "{log}");
    assert!(log.contains("context vendor-sdk: cpp_sdk.h libWeWorkSpecSDK.so"), "{log}");
    assert!(log.contains("context deploy: config.toml"), "{log}");
    assert!(log.contains("create zp:test") && log.contains("export -o"), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("save")), "never docker save: {log}");
    assert!(Path::new(&e.path("out/zp.tar")).is_file());
    assert!(stdout.contains("start command:    /bin/sh"), "{stdout}");
    assert!(stdout.contains("start arguments:  /opt/zone-program/bin/start.sh"), "{stdout}");
}

#[test]
fn the_export_script_refuses_an_sdk_archive_whose_sha256_differs_before_building() {
    let e = Export::new("linux/amd64");
    let (archive, _) = sdk_archive(e.dir.path());
    let (code, _, stderr) = e.run(&["--sdk-archive", &archive.display().to_string(), "--sdk-sha256", &"0".repeat(64)]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("SHA-256 mismatch"), "{stderr}");
    assert!(!e.log().contains("build"), "nothing was built: {}", e.log());
}

#[test]
fn the_export_script_refuses_an_image_that_is_not_amd64() {
    let e = Export::new("linux/arm64");
    let (code, _, stderr) = e.run(&["--no-sdk"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is linux/arm64; the zone runs linux/amd64"), "{stderr}");
    assert!(!e.log().contains("export"), "{}", e.log());
}

#[test]
fn the_export_script_says_clearly_when_no_container_engine_answers() {
    let e = Export::new("linux/amd64");
    std::fs::write(&e.engine, "#!/bin/sh\nexit 1\n").unwrap();
    let (code, _, stderr) = e.run(&["--no-sdk"]);
    assert_eq!(code, Some(3));
    assert!(stderr.contains("no container engine answers; nothing was built"), "{stderr}");
    assert!(stderr.contains("no engine answers (daemon not running or not reachable)"), "{stderr}");
    let out = Command::new(repo().join("scripts/export-image.sh"))
        .args(["--no-sdk", "--deploy", &e.path("deploy")])
        .env("CONTAINER_ENGINE", "no-such-engine-here")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-engine-here: not installed"));
}

#[test]
fn the_export_script_without_an_sdk_or_a_config_stops_with_what_to_do() {
    let e = Export::new("linux/amd64");
    let (code, _, stderr) = e.run(&[]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("pass --no-sdk"), "{stderr}");
    std::fs::remove_file(e.dir.path().join("deploy/config.toml")).unwrap();
    let (code, _, stderr) = e.run(&["--no-sdk"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cp deploy/config.zone.example.toml"), "{stderr}");
}

#[test]
fn the_zone_config_example_loads() {
    let path = repo().join("deploy/config.zone.example.toml");
    let config = zone_program::config::Config::load(Some(&path), Vec::new()).unwrap();
    assert_eq!(config.server.listen.port(), 8080);
    assert_eq!(config.sdk.backend, zone_program::config::SdkBackend::Native);
}
