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

/// The workspace root (scripts/, deploy/, native/), two levels above this crate.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
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

/// Review finding 3: the zone's start check only warned about the local backend, whose default keys
/// are public. (Serving from the install directory is shown by the native layout test below.)
#[test]
fn the_start_script_refuses_the_local_backend() {
    let home = install("[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"data/store.sqlite\"\n");
    let out = start_script(home.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  sdk: local backend") && stdout.contains("sdk.backend = \"native\""), "{stdout}");
}

/// The native layout of the image, built as the Dockerfile builds it: the shim compiled by
/// `native/build.sh --sdk-dir` against a vendor SDK (here the stub SDK's header and library stand in
/// for it, so the shim passes the stub its init options: the codec's demo token and key) into `lib/`,
/// the vendor library beside it.
#[test]
fn the_start_script_serves_the_native_backend_laid_out_as_in_the_image() {
    if !crate::backend::native_available() {
        return;
    }
    let vendor = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("native/stub-sdk/cpp_sdk.h"), vendor.path().join("cpp_sdk.h")).unwrap();
    std::fs::copy(crate::backend::stub_sdk_path(), vendor.path().join("libWeWorkSpecSDK.so")).unwrap();
    let defaults = zone_program::config::Config::load(None, Vec::new()).unwrap();
    let options = crate::backend::stub_options(&defaults.sdk);
    let home = install(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"data/store.sqlite\"\n\
         [sdk]\nbackend = \"native\"\n[sdk.native]\nlibrary = \"lib/libzone_shim.so\"\nlog_to_sdk = false\n\
         init_options = \"{options}\"\n",
    ));
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
    assert!(preflight.contains("preflight passed"), "{preflight}");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(home.path().join("data").is_dir(), "relative paths resolve in the install directory");

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
/// `--build-context`, reports `platform` as the image platform, and exports a tar with the image
/// layout (an x86-64 executable as `zone-programd`, placeholders for the rest; scripts/test-image.sh
/// checks the real image); with `FAKE_BROKEN` set, a broken one: keys/ readable by others and a binary
/// carrying the local zone's code (its crate path, as in the developer CLI).
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
    z="$root/opt/zone-program"
    mkdir -p "$z/bin" "$z/lib" "$z/keys" "$z/data" "$root/usr/bin" "$root/usr/lib/x86_64-linux-gnu"
    ln -s usr/bin "$root/bin"
    cp /bin/true "$z/bin/zone-programd"
    touch "$z/bin/start.sh" "$z/config.toml" "$root/usr/bin/sh" "$z/lib/libzone_shim.so" "$z/lib/libWeWorkSpecSDK.so" \
      "$root/usr/lib/x86_64-linux-gnu/libstdc++.so.6" "$root/usr/lib/x86_64-linux-gnu/libcrypto.so.3" "$z/keys/wwCORPID.1.pem"
    chmod 0644 "$z/config.toml"; chmod 0700 "$z/keys" "$z/data"; chmod 0600 "$z/keys/wwCORPID.1.pem"
    if [ -n "${{FAKE_BROKEN:-}}" ]; then chmod 0755 "$z/keys"; echo crates/zone-local/src/lib.rs >> "$z/bin/zone-programd"; fi
    tar --owner=0 --group=0 --numeric-owner -cf "$3" -C "$root" .
    rm -rf "$root" ;;
  *) echo "unexpected engine call: $*" >&2; exit 99 ;;
esac
"#,
        log = log.display(),
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
        self.run_with(args, &[("CONTAINER_ENGINE", &self.engine.display().to_string())])
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
        let out = Command::new(repo().join("scripts/export-image.sh"))
            .args(["--deploy", &self.path("deploy"), "--tag", "zp:test", "--out", &self.path("out/zp.tar")])
            .args(args)
            .envs(env.iter().copied())
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

/// The path CI takes (scripts/test-image.sh): Podman named with `--engine`, a locally imported base,
/// chroot isolation, and the host-built binary instead of the Rust image.
#[test]
fn the_export_script_builds_on_a_local_base_from_a_prebuilt_binary() {
    let e = Export::new("linux/amd64");
    let binary = "/bin/true";
    let engine = e.engine.display().to_string();
    let (code, stdout, stderr) = e.run_with(
        &[
            "--no-sdk",
            "--engine",
            &engine,
            "--base",
            "localhost/debian:bookworm-local",
            "--isolation",
            "chroot",
            "--binary",
            binary,
        ],
        &[("CONTAINER_ENGINE", "no-such-engine-here")],
    );
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let log = e.log();
    assert!(log.contains("--build-arg RUNTIME_IMAGE=localhost/debian:bookworm-local"), "{log}");
    assert!(log.contains("--isolation=chroot"), "{log}");
    assert!(log.contains("--build-arg PROGRAM_FROM=prebuilt-out"), "{log}");
    assert!(log.contains("context prebuilt: opt"), "{log}");
    assert!(stdout.contains("layout ok"), "{stdout}");

    let (code, _, stderr) = e.run(&["--no-sdk", "--binary", &e.path("no-such-binary")]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not an executable file"), "{stderr}");
}

#[test]
fn the_export_script_refuses_an_exported_layout_the_checker_finds_broken() {
    let e = Export::new("linux/amd64");
    let engine = e.engine.display().to_string();
    let (code, stdout, stderr) = e.run_with(&["--no-sdk"], &[("CONTAINER_ENGINE", &engine), ("FAKE_BROKEN", "1")]);
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("/opt/zone-program/keys is 755; expected 0700"), "{stderr}");
    assert!(stderr.contains("carries emulator, bench or app code"), "the developer CLI is caught: {stderr}");
    assert!(stderr.contains("the exported layout is wrong (see above); do not upload it"), "{stderr}");
    assert!(!stdout.contains("start command:"), "no form fields for a broken tar: {stdout}");
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

/// Issue 16: `check-config` accepted a configuration whose key file did not exist. It checks the
/// keyring's files now (the SDK library, data directory and port stay with `preflight`).
#[test]
fn check_config_fails_on_a_missing_key_file_and_passes_once_it_is_there() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("wwcorp.3.pem");
    let config = home.path().join("config.toml");
    let keyring = format!(
        "[keyring]\nkeys = [{{ corp_id = \"wwcorp\", public_key_ver = 3, private_key_path = \"{}\" }}]\n",
        key.display()
    );
    std::fs::write(&config, keyring).unwrap();
    let check = || {
        let out = Command::new(image_binary()).arg("--config").arg(&config).arg("check-config").output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = check();
    assert_eq!(code, Some(1), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("FAIL  keyring.keys[0]:") && stdout.contains("wwcorp.3.pem"), "{stdout}");
    assert!(stdout.contains("fix: create it with `zone-program keygen --corp-id wwcorp`"), "{stdout}");
    assert!(stderr.contains("check-config failed: 1 problem(s)"), "{stderr}");
    assert!(!stdout.contains("configuration ok"), "{stdout}");

    std::fs::write(&key, crate::helpers::TEST_RSA_KEY).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, stdout, _) = check();
    assert_eq!(code, Some(1), "a key others can read is refused too: {stdout}");
    assert!(stdout.contains("FAIL  keyring.keys[0]:"), "{stdout}");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, stdout, stderr) = check();
    assert_eq!(code, Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("ok    keyring.keys[0]:") && stdout.contains("configuration ok"), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"), "no key material is printed");
}
