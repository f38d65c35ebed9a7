//! `zone-program app …`: each subcommand as one arm over [`AppClient`]. Results go to standard
//! output (JSON where the reply is JSON); a non-zero `errcode`, WeCom's or the program's, is shown
//! with its meaning and makes the command fail.

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::listen::{self, Fetch, Listener};
use super::notify::CallbackKeys;
use super::token::unix_now;
use super::{AppClient, AsyncResult, as_json, errcode};
use crate::config::AppConfig;

/// Options of `app`.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// Override app.base_url (`https://qyapi.weixin.qq.com` or the local zone).
    #[arg(long, global = true, value_name = "URL")]
    pub base_url: Option<String>,
    /// Override app.program_id.
    #[arg(long, global = true)]
    pub program_id: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: AppCommand,
}

/// The `app` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Print a valid access_token (cached in app.token_cache until it expires).
    Token {
        /// Fetch a new one even if the cached one is still valid.
        #[arg(long)]
        refresh: bool,
    },
    /// sync_call_program: call an ability and print its response_data.
    Call {
        /// The ability id, e.g. invoke_sync_msg or get_callback_data.
        ability: String,
        /// request_data: a JSON text, `-` for standard input.
        #[arg(default_value = "{}")]
        request_data: String,
        /// The NotifyId of a program_notify this call answers.
        #[arg(long)]
        notify_id: Option<String>,
    },
    /// async_program_task: start an ability as a job and print its jobid.
    Async {
        /// The ability id.
        ability: String,
        /// request_data: a JSON text, `-` for standard input.
        #[arg(default_value = "{}")]
        request_data: String,
    },
    /// async_program_result: print what the program reported for a job (or that it still runs).
    Result {
        /// The jobid from `app async`.
        jobid: String,
        /// Poll until the job is done, for at most this many seconds.
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
    /// set_public_key: register the public key that wraps message secret keys.
    SetPublicKey {
        /// The public key PEM (e.g. keys/<corp_id>.<ver>.pub.pem from `keygen`).
        #[arg(long, value_name = "FILE")]
        public_key_file: PathBuf,
        /// public_key_ver (default: the <ver> in the file name).
        #[arg(long)]
        ver: Option<u32>,
    },
    /// set_receive_callback: make the program the one that receives events.
    SetReceiveCallback,
    /// get_log_level / set_log_level of the program.
    LogLevel {
        /// get or set.
        #[command(subcommand)]
        action: LogLevelAction,
    },
    /// Debug mode of the program: open_debug_mode, close_debug_mode, check_debug_mode.
    Debug {
        /// open, close or status.
        #[command(subcommand)]
        action: DebugAction,
    },
    /// Receive WeCom callbacks (URL verification, program_notify) and print one JSON line each.
    Listen {
        /// Override app.callback.listen.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Fetch each notification's data right away with sync_call_program and its NotifyId.
        #[arg(long)]
        fetch: bool,
        /// The ability that returns notify data.
        #[arg(long, default_value = "get_callback_data")]
        ability: String,
        /// request_data of the fetch call.
        #[arg(long, default_value = "{}")]
        request_data: String,
        /// Exit after this many program_notify events.
        #[arg(long)]
        count: Option<u64>,
    },
}

/// `app log-level` actions.
#[derive(Debug, Subcommand)]
pub enum LogLevelAction {
    /// Print the program's log level.
    Get,
    /// Set the program's log level.
    Set {
        /// err (1), info (2, WeCom's default) or dbg (3).
        #[arg(value_enum)]
        level: crate::LogLevel,
    },
}

/// `app debug` actions.
#[derive(Debug, Subcommand)]
pub enum DebugAction {
    /// open_debug_mode with the debug token (调试凭证, valid 3 days).
    Open {
        /// The debug token.
        #[arg(long, env = "ZONE_PROGRAM_DEBUG_TOKEN", hide_env_values = true)]
        debug_token: String,
    },
    /// close_debug_mode.
    Close,
    /// check_debug_mode.
    Status,
}

/// Runs one `app` subcommand with `config` (`[app]`, overridden by the global `app` options);
/// `app listen` runs until `stop` resolves (the caller's shutdown signal).
pub async fn run(
    args: AppArgs,
    mut config: AppConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    if let Some(url) = args.base_url {
        config.base_url = url;
    }
    if let Some(id) = args.program_id {
        config.program_id = id;
    }
    config.validate()?;
    let app = &config;
    let client = AppClient::from_config(app)?;
    let program = app.program_id.as_str();
    match args.command {
        AppCommand::Token { refresh } => {
            if refresh {
                client.forget_token().await;
            }
            let t = client.access_token().await?;
            let valid_for = t.refresh_at.saturating_sub(unix_now());
            print_json(&json!({ "access_token": t.token.expose_secret(), "valid_for_secs": valid_for }));
        }
        AppCommand::Call { ability, request_data, notify_id } => {
            let request_data = request_text(&request_data)?;
            let data = client.sync_call_program(program, &ability, &request_data, notify_id.as_deref()).await?;
            print_response_data(&data);
            check_program_errcode(&data)?;
        }
        AppCommand::Async { ability, request_data } => {
            let request_data = request_text(&request_data)?;
            let jobid = client.async_program_task(program, &ability, &request_data).await?;
            print_json(&json!({ "jobid": jobid }));
        }
        AppCommand::Result { jobid, wait } => {
            let r = client.await_async_result(&jobid, Duration::from_secs(wait.unwrap_or(0))).await?;
            match r {
                AsyncResult::Running => {
                    print_json(&json!({ "jobid": jobid, "status": "running" }));
                    anyhow::ensure!(wait.is_none(), "the job is still running after {} s", wait.unwrap_or(0));
                }
                AsyncResult::Done { response_errcode, response_data } => {
                    print_json(&json!({
                        "jobid": jobid, "status": "done",
                        "response_errcode": response_errcode, "response_data": as_json(&response_data),
                    }));
                    anyhow::ensure!(response_errcode == 0, "the job reported {}", errcode::describe(response_errcode));
                    check_program_errcode(&response_data)?;
                }
            }
        }
        AppCommand::SetPublicKey { public_key_file, ver } => {
            let pem = std::fs::read_to_string(&public_key_file)
                .with_context(|| format!("reading {}", public_key_file.display()))?;
            anyhow::ensure!(
                pem.contains("-----BEGIN PUBLIC KEY-----"),
                "{} is not a PEM public key (SubjectPublicKeyInfo, `BEGIN PUBLIC KEY`)",
                public_key_file.display()
            );
            let ver = match ver {
                Some(v) => v,
                None => version_from_file_name(&public_key_file, &app.corp_id)?,
            };
            client.set_public_key(&pem, ver).await?;
            print_json(&json!({ "corp_id": app.corp_id, "public_key_ver": ver, "set": true }));
        }
        AppCommand::SetReceiveCallback => {
            client.set_receive_callback(program).await?;
            print_json(&json!({ "program_id": program, "receives_events": true }));
        }
        AppCommand::LogLevel { action: LogLevelAction::Get } => {
            let level = client.log_level(program).await?;
            print_json(
                &json!({ "program_id": program, "log_level": level.number(), "name": format!("{level:?}").to_uppercase() }),
            );
        }
        AppCommand::LogLevel { action: LogLevelAction::Set { level } } => {
            client.set_log_level(program, level).await?;
            print_json(&json!({ "program_id": program, "log_level": level.number() }));
        }
        AppCommand::Debug { action: DebugAction::Open { debug_token } } => {
            client.open_debug_mode(program, &SecretString::from(debug_token)).await?;
            print_json(&json!({ "program_id": program, "debug_mode": "open" }));
        }
        AppCommand::Debug { action: DebugAction::Close } => {
            client.close_debug_mode(program).await?;
            print_json(&json!({ "program_id": program, "debug_mode": "closed" }));
        }
        AppCommand::Debug { action: DebugAction::Status } => {
            let mut status = client.check_debug_mode(program).await?;
            status["program_id"] = json!(program);
            print_json(&status);
        }
        AppCommand::Listen { listen, fetch, ability, request_data, count } => {
            let cb = &app.callback;
            let receive_ids =
                if cb.receive_ids.is_empty() { vec![app.corp_id.clone()] } else { cb.receive_ids.clone() };
            let keys = CallbackKeys::new(cb.token.expose_secret(), cb.encoding_aes_key.expose_secret(), receive_ids)
                .map_err(|e| anyhow::anyhow!("app.callback keys: {e}"))?;
            let request_data = request_text(&request_data)?;
            let mut listener = Listener::bind(listen.unwrap_or(cb.listen), &cb.path, keys)
                .await
                .with_context(|| format!("binding {}", listen.unwrap_or(cb.listen)))?;
            let fetch = fetch.then(|| Fetch { program_id: program.to_owned(), ability_id: ability, request_data });
            print_line(&json!({ "event": "listening", "url": listener.url() }));
            listen::run(&mut listener, &client, fetch.as_ref(), count, stop, |line| print_line(&line)).await;
        }
    }
    Ok(())
}

/// `request_data` from the argument (`-` reads standard input), checked to be JSON.
fn request_text(arg: &str) -> anyhow::Result<String> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading request_data from standard input")?;
        s
    } else {
        arg.to_owned()
    };
    serde_json::from_str::<Value>(&text).context("request_data is not JSON")?;
    Ok(text)
}

fn version_from_file_name(path: &std::path::Path, corp_id: &str) -> anyhow::Result<u32> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| crate::keygen::key_file_version(n, corp_id))
        .with_context(|| format!("give --ver: {} is not named {corp_id}.<ver>.pub.pem", path.display()))
}

/// The program's output is a JSON object with `errcode`; a non-zero one fails the command.
fn check_program_errcode(response_data: &str) -> anyhow::Result<()> {
    let code = serde_json::from_str::<Value>(response_data).ok().and_then(|v| v["errcode"].as_i64()).unwrap_or(0);
    anyhow::ensure!(code == 0, "the program answered {}", errcode::describe(code));
    Ok(())
}

fn print_response_data(data: &str) {
    match serde_json::from_str::<Value>(data) {
        Ok(v) => print_json(&v),
        Err(_) => println!("{data}"),
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).expect("a Value serialises"));
}

/// One JSON line, flushed at once (a consumer reads them as they come).
fn print_line(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_data_must_be_json() {
        assert_eq!(request_text(r#"{"limit":10}"#).unwrap(), r#"{"limit":10}"#);
        assert!(request_text("{limit:10}").unwrap_err().to_string().contains("not JSON"));
    }

    #[test]
    fn a_program_errcode_fails_the_command_with_its_meaning() {
        assert!(check_program_errcode(r#"{"errcode":0,"errmsg":"ok"}"#).is_ok());
        assert!(check_program_errcode("plain text").is_ok());
        let err = check_program_errcode(r#"{"errcode":900003,"errmsg":"unknown ability"}"#).unwrap_err();
        assert_eq!(err.to_string(), "the program answered errcode 900003 (unknown ability)");
    }

    #[test]
    fn the_version_is_read_from_a_keygen_file_name() {
        assert_eq!(version_from_file_name("keys/wwc.3.pub.pem".as_ref(), "wwc").unwrap(), 3);
        assert!(version_from_file_name("keys/pub.pem".as_ref(), "wwc").is_err());
    }
}
