//! The Netty peer: a Java server in the architecture of the official Java demo 1.4.0
//! (`java/NettyDemo.java`: a Netty `ServerBootstrap`, N NIO IO threads, `HttpServerCodec` +
//! `HttpObjectAggregator`, the handler on a `DefaultEventExecutorGroup` of M business threads),
//! doing the same work per request as the other demo baselines with the JDK's crypto. It runs on
//! OpenJDK with Debian's `libnetty-java` (`scripts/bench-deps.sh` installs both): the bench
//! compiles the source with `javac` into its work directory once per run and starts `java` as a
//! child process like every other server, so the same `/proc` readings measure it.
//!
//! Without `java`, `javac` or the Netty jars the peer is skipped with the reason (`--netty auto`,
//! the default), or the run fails (`--netty require`).

use anyhow::Context as _;
use clap::ValueEnum;
use secrecy::ExposeSecret as _;
use std::path::{Path, PathBuf};

use super::process::ServerCommand;
use super::scenario::Calibration;
use zone_testkit::DevConfig;

/// The server's source, built into the bench so that an installed binary needs no source tree.
const SOURCE: &str = include_str!("../java/NettyDemo.java");
/// Its main class.
const MAIN_CLASS: &str = "NettyDemo";
/// The Netty modules the server needs (`/usr/share/java/netty-<module>.jar` on Debian).
const MODULES: [&str; 7] = ["common", "buffer", "transport", "resolver", "codec", "codec-http", "handler"];
/// Where Debian puts the jars; `ZONE_BENCH_NETTY_JARS` names another folder.
const DEBIAN_JARS: &str = "/usr/share/java";

/// Whether a run measures the Netty peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum NettyMode {
    /// When `java`, `javac` and the Netty jars are there; otherwise skipped, saying why.
    #[default]
    Auto,
    /// Always: a run without them fails.
    Require,
    /// Never.
    Off,
}

/// The shape of the server: its IO and business thread counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The official Java demo 1.4.0: 256 IO + 256 business threads.
    Demo,
    /// What a public zone program runs: 4 IO + 4 business threads.
    Public,
}

impl Shape {
    /// (IO threads, business threads).
    pub fn threads(self) -> (usize, usize) {
        match self {
            Self::Demo => (256, 256),
            Self::Public => (4, 4),
        }
    }
}

/// A JDK and the Netty jars, found.
#[derive(Debug, Clone)]
pub struct Toolchain {
    java: PathBuf,
    javac: PathBuf,
    jars: Vec<PathBuf>,
}

/// Finds `java` and `javac` (in `$JAVA_HOME/bin`, else on `PATH`) and the Netty jars; the error
/// says what is missing and how to install it.
pub fn find() -> Result<Toolchain, String> {
    let install = "run scripts/bench-deps.sh (as root: apt-get install openjdk-17-jdk-headless libnetty-java)";
    let tool = |name: &str| {
        let home = std::env::var_os("JAVA_HOME").map(|h| PathBuf::from(h).join("bin").join(name));
        home.filter(|p| p.is_file()).or_else(|| on_path(name)).ok_or_else(|| format!("no `{name}` found; {install}"))
    };
    let (java, javac) = (tool("java")?, tool("javac")?);
    let dir = std::env::var_os("ZONE_BENCH_NETTY_JARS").map_or_else(|| PathBuf::from(DEBIAN_JARS), PathBuf::from);
    let mut jars = Vec::new();
    for module in MODULES {
        let jar = dir.join(format!("netty-{module}.jar"));
        if !jar.is_file() {
            return Err(format!("no {} (Debian's libnetty-java); {install}", jar.display()));
        }
        jars.push(jar);
    }
    Ok(Toolchain { java, javac, jars })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}

impl Toolchain {
    fn classpath(&self, classes: &Path) -> anyhow::Result<std::ffi::OsString> {
        Ok(std::env::join_paths(std::iter::once(classes).chain(self.jars.iter().map(PathBuf::as_path)))?)
    }

    /// Compiles the server into `work_dir/netty` (once: a later call finds the class there).
    pub fn compile(&self, work_dir: &Path) -> anyhow::Result<PathBuf> {
        let dir = work_dir.join("netty");
        let classes = dir.join("classes");
        if classes.join(format!("{MAIN_CLASS}.class")).is_file() {
            return Ok(classes);
        }
        std::fs::create_dir_all(&classes).with_context(|| format!("creating {}", classes.display()))?;
        let source = dir.join(format!("{MAIN_CLASS}.java"));
        std::fs::write(&source, SOURCE).with_context(|| format!("writing {}", source.display()))?;
        let jars = std::env::join_paths(&self.jars)?;
        let out = std::process::Command::new(&self.javac)
            .arg("-nowarn")
            .arg("-cp")
            .arg(jars)
            .arg("-d")
            .arg(&classes)
            .arg(&source)
            .output()
            .with_context(|| format!("running {}", self.javac.display()))?;
        anyhow::ensure!(
            out.status.success(),
            "javac failed on the Netty peer ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(classes)
    }

    /// How to start the server of `shape`, blocking as long as the calibrated SDK call and replying
    /// as much. The codec's secrets go in its environment, not on its command line.
    pub fn command(
        &self,
        classes: &Path,
        shape: Shape,
        calibration: &Calibration,
        config: &DevConfig,
        log: PathBuf,
    ) -> anyhow::Result<ServerCommand> {
        let local = &config.program.sdk.local;
        let (io, business) = shape.threads();
        let mut args: Vec<String> = vec!["-cp".into(), self.classpath(classes)?.to_string_lossy().into_owned()];
        args.push(MAIN_CLASS.into());
        for (name, value) in [
            ("--listen", "{listen}".to_owned()),
            ("--io-threads", io.to_string()),
            ("--business-threads", business.to_string()),
            ("--sdk-latency-us", calibration.sdk_latency.as_micros().to_string()),
            ("--reply-bytes", calibration.reply_bytes.to_string()),
            ("--window-secs", local.replay_window_secs.to_string()),
            ("--body-limit", config.program.server.body_limit_bytes.to_string()),
        ] {
            args.extend([name.to_owned(), value]);
        }
        let keys: Vec<String> =
            local.keys.iter().map(|k| format!("{}:{}", k.ver, k.encoding_aes_key.expose_secret())).collect();
        let env = vec![
            ("NETTY_DEMO_TOKEN".to_owned(), local.token.expose_secret().to_owned()),
            ("NETTY_DEMO_KEYS".to_owned(), keys.join(",")),
        ];
        Ok(ServerCommand { exe: self.java.clone(), args, env, log })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_demo_architecture() {
        for needle in [
            "new NioEventLoopGroup(ioThreads)",
            "new DefaultEventExecutorGroup(businessThreads)",
            "new HttpServerCodec()",
            "new HttpObjectAggregator(bodyLimit)",
            ".addLast(business, new Handler(",
            "AES/CBC/NoPadding",
            "MessageDigest.getInstance(\"SHA-1\")",
        ] {
            assert!(SOURCE.contains(needle), "{needle} missing from NettyDemo.java");
        }
    }
}
