//! The local zone's console: the timeline JSON (`/local/calls`), the index (`/local/`), and the page
//! itself in a real headless Chromium driven over the WebDriver protocol (chromedriver).
//!
//! The browser test needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; `scripts/browser-deps.sh` installs them). Without them it is skipped with a
//! message, unless `ZONE_TEST_REQUIRE_BROWSER=1` (set by `scripts/test.sh` and so in CI), where their
//! absence fails it. Screenshots go to `<target>/tmp/console-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{DEADLINE, TestEnv, poll};

async fn calls(env: &TestEnv) -> Vec<Value> {
    let url = format!("{}/local/calls", env.zone_url());
    let v: Value = env.http.get(url).send().await.unwrap().json().await.unwrap();
    v["calls"].as_array().cloned().unwrap()
}

fn steps_of<'a>(c: &'a Value, kind: &str) -> Vec<&'a Value> {
    c["steps"].as_array().unwrap().iter().filter(|s| s["kind"] == kind).collect()
}

#[tokio::test]
async fn the_timeline_links_an_event_its_sdk_calls_its_notify_and_the_fetch_of_its_data() {
    let env = TestEnv::spawn().await;
    let world = env.world().await;
    let chat = &world["chats"][0];
    let sender = chat["members"][0]["id"].as_str().unwrap();
    let sent = env
        .control("messages", json!({"sender": sender, "chatid": chat["chatid"], "content": "timeline please"}))
        .await;
    assert_eq!(sent["errcode"], 0, "{sent}");
    let notified = env.next_notify().await;

    // The event's interaction gathers the follow-up's SDK calls and the push, from the zone's side.
    let list = poll(
        || async { Value::Array(calls(&env).await) },
        |v| {
            v.as_array().unwrap().iter().any(|c| {
                c["title"] == "conversation_new_message" && !steps_of(c, "notify").is_empty() && c["program"] == "ok"
            })
        },
    )
    .await;
    let event = list.as_array().unwrap().iter().find(|c| c["title"] == "conversation_new_message").unwrap();
    assert_eq!(event["origin"], "event");
    assert_eq!(event["call_type"], 2);
    assert_eq!(event["errcode"], 0, "{event}");
    let apis: Vec<&str> = steps_of(event, "sdk").iter().map(|s| s["api"].as_str().unwrap()).collect();
    assert!(apis.contains(&"sync_msg") && apis.contains(&"spec_notify_app"), "{apis:?}");
    let push = steps_of(event, "notify")[0];
    assert_eq!(push["notify_id"], notified.notify_id.as_str());
    assert_eq!(push["delivered"], true);

    // The app fetches the data: a new interaction, and a `fetched` step on the event pointing at it.
    let fetched = env.app_call("get_callback_data", "{}", Some(&notified.notify_id)).await;
    assert_eq!(fetched["errcode"], 0, "{fetched}");
    let list = calls(&env).await;
    let fetch = list.iter().find(|c| c["ability_id"] == "get_callback_data").unwrap();
    assert_eq!(fetch["origin"], "app");
    assert_eq!(fetch["app_errcode"], 0);
    let event = list.iter().find(|c| c["id"] == event["id"]).unwrap();
    assert_eq!(steps_of(event, "fetched")[0]["by"], fetch["id"]);

    // `since` returns only what changed after the sequence number given.
    let url = format!("{}/local/calls", env.zone_url());
    let all: Value = env.http.get(&url).send().await.unwrap().json().await.unwrap();
    let none: Value = env.http.get(format!("{url}?since={}", all["seq"])).send().await.unwrap().json().await.unwrap();
    assert_eq!(none["calls"], json!([]));
}

#[tokio::test]
async fn an_async_app_call_shows_its_job_sdk_calls_and_report_in_the_timeline() {
    let env = TestEnv::spawn().await;
    let started = env.app_async("invoke_get_rule_list", "{}").await;
    let jobid = started["jobid"].as_str().unwrap().to_owned();
    env.await_async_result(&jobid).await;
    let list = calls(&env).await;
    let job = list.iter().find(|c| c["jobid"] == jobid.as_str()).unwrap();
    assert_eq!(job["is_async"], true);
    assert_eq!(job["title"], "async_program_task");
    assert!(steps_of(job, "sdk").iter().any(|s| s["api"] == "get_rule_list"), "{job}");
    assert!(steps_of(job, "sdk").iter().any(|s| s["api"] == "program_async_job_call_back"), "{job}");
    assert_eq!(steps_of(job, "report")[0]["errcode"], 0);
    let state: Value =
        env.http.get(format!("{}/local/state", env.zone_url())).send().await.unwrap().json().await.unwrap();
    let listed = state["jobs"].as_array().unwrap().iter().find(|j| j["jobid"] == jobid.as_str()).unwrap();
    assert_eq!(listed["state"], "done: errcode 0");
    assert_eq!(state["public_key_versions"], json!([1]));
}

#[tokio::test]
async fn the_local_index_lists_every_control_and_the_console() {
    let env = TestEnv::spawn().await;
    let index: Value = env.http.get(format!("{}/local/", env.zone_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(index["console"], "/local/ui");
    let paths: Vec<&str> = index["controls"].as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap()).collect();
    for p in ["/local/ui", "/local/world", "/local/messages", "/local/events", "/local/faults", "/local/clock/advance"]
    {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    let page = env.http.get(format!("{}/local/ui", env.zone_url())).send().await.unwrap();
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(html.contains("/local/ui/console.js") && !html.contains("http://") && !html.contains("https://"));
}

// ---- the page in a real browser ----

/// The browser and its driver, or why they are missing.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let find = |names: &[&str]| {
        names.iter().find_map(|n| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
    };
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"]).ok_or("no chromium on PATH")?;
    let driver = find(&["chromedriver"]).ok_or("no chromedriver on PATH")?;
    Ok((chromium, driver))
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session (W3C protocol over HTTP), deleted on [`Session::quit`].
struct Session {
    http: reqwest::Client,
    base: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Session {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(reqwest::Method::POST, "/execute/sync", Some(json!({ "script": script, "args": args }))).await
    }

    /// Finds `css`, then runs `then` with the element's id; retried while the page re-renders.
    async fn on(&self, css: &str, action: &str, body: Value) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let found =
                self.cmd(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
            if let Some(id) = found[ELEMENT].as_str() {
                let out = self.cmd(reqwest::Method::POST, &format!("/element/{id}/{action}"), Some(body.clone())).await;
                if out.get("error").is_none() {
                    return out;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "{css}: {action} failed: {found}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.on(css, "click", json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.on(css, "clear", json!({})).await;
        self.on(css, "value", json!({ "text": text })).await;
    }

    /// Polls `script` (returning a string) until `done` holds for it.
    async fn wait_text(&self, script: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let v = self.js(script, json!([])).await;
            let text = v.as_str().unwrap_or_default().to_owned();
            if done(&text) {
                return text;
            }
            assert!(tokio::time::Instant::now() < deadline, "not seen before the deadline; the page shows:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, dir: &Path, name: &str) {
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    async fn quit(self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

async fn start_driver(driver: &Path, chromium: &Path) -> (Driver, Session) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    poll(
        || async {
            match http.get(format!("{}/status", driver.url)).send().await {
                Ok(r) => r.json::<Value>().await.unwrap_or_default(),
                Err(_) => Value::Null,
            }
        },
        |v| v["value"]["ready"] == true,
    )
    .await;
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1600,1100", "--no-first-run"],
        },
    }}});
    let created: Value =
        http.post(format!("{}/session", driver.url)).json(&caps).send().await.unwrap().json().await.unwrap();
    let id = created["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {created}")).to_owned();
    let base = format!("{}/session/{id}", driver.url);
    (driver, Session { http, base })
}

const TIMELINE_TEXT: &str = "return document.getElementById('timeline').innerText";

#[tokio::test]
async fn the_console_in_a_real_browser_sends_a_message_sees_the_whole_loop_and_calls_an_ability() {
    let (chromium, driver) = match browser() {
        Ok(found) => found,
        Err(why) if std::env::var("ZONE_TEST_REQUIRE_BROWSER").as_deref() != Ok("1") => {
            eprintln!(
                "SKIPPED the_console_in_a_real_browser…: {why} (install chromium and chromium-driver, or run \
                 scripts/browser-deps.sh; ZONE_TEST_REQUIRE_BROWSER=1 makes this a failure)"
            );
            return;
        }
        Err(why) => panic!("ZONE_TEST_REQUIRE_BROWSER=1 but {why}"),
    };
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let env = TestEnv::spawn().await;
    let world = env.world().await;
    let chat = world["chats"][0]["chatid"].as_str().unwrap().to_owned();
    let (_driver, s) = start_driver(&driver, &chromium).await;

    s.goto(&format!("{}/local/ui", env.zone_url())).await;
    s.wait_text("return document.body.dataset.ready || ''", |t| t == "1").await;
    // The seeded world is on the page.
    let world_text = s.wait_text("return document.getElementById('world').textContent", |t| t.contains(&chat)).await;
    assert!(world_text.contains("Knowledge sets"));

    // Send a message through the form: the event, its SDK calls and the notify appear.
    s.js(
        "const c = document.getElementById('msg-chat'); c.value = arguments[0]; c.dispatchEvent(new Event('change'));",
        json!([chat]),
    )
    .await;
    s.type_into("#msg-content", "Can you send me the invoice today?").await;
    s.click("#msg-send").await;
    s.wait_text(TIMELINE_TEXT, |t| t.contains("event conversation_new_message → program errcode 0")).await;
    // Expand the event (the newest one of its kind) and see each step.
    let id = s
        .js(
            "return [...document.querySelectorAll('.call')].find(c => c.textContent.includes('event conversation_new_message')).id",
            json!([]),
        )
        .await;
    let id = id.as_str().unwrap().to_owned();
    s.click(&format!("#{id} summary")).await;
    let expanded = format!("return document.getElementById('{id}').innerText");
    let text = s
        .wait_text(&expanded, |t| {
            t.contains("SDK sync_msg → errcode 0")
                && t.contains("SDK spec_notify_app → errcode 0")
                && t.contains("→ delivered")
        })
        .await;
    assert!(text.contains("program_notify"), "{text}");
    s.screenshot(&shots, "console-event.png").await;

    // Fetch the notified data from the notify step: the fetch appears on the event.
    s.click(&format!("#{id} .step-notify button")).await;
    s.wait_text(&expanded, |t| t.contains("get_callback_data (#")).await;
    let fetched = s.wait_text("return document.getElementById('ab-output').textContent", |t| !t.is_empty()).await;
    assert!(fetched.contains("\"errcode\": 0") || fetched.contains("\"errcode\":0"), "{fetched}");

    // Call an ability from the form: its input is prefilled from list_abilities; the output shows.
    s.js(
        "const a = document.getElementById('ab-id'); a.value = 'invoke_get_group_chat'; a.dispatchEvent(new Event('change'));",
        json!([]),
    )
    .await;
    let prefilled = s.js("return document.getElementById('ab-input').value", json!([])).await;
    assert!(prefilled.as_str().unwrap().contains("chatid"), "prefilled from list_abilities: {prefilled}");
    let internal = world["chats"].as_array().unwrap().iter().find(|c| c["internal"] == true).expect("an internal chat");
    s.type_into("#ab-input", &json!({ "chatid": internal["chatid"] }).to_string()).await;
    s.click("#ab-call").await;
    let output =
        s.wait_text("return document.getElementById('ab-output').textContent", |t| t.contains("members")).await;
    assert!(output.contains("\"errcode\": 0"), "{output}");
    s.wait_text(TIMELINE_TEXT, |t| t.contains("sync_call_program invoke_get_group_chat → program errcode 0")).await;

    // An async call: its job appears in the jobs table and ends reported.
    s.js(
        "const a = document.getElementById('ab-id'); a.value = 'list_abilities'; a.dispatchEvent(new Event('change'));\
         document.getElementById('ab-async').checked = true;",
        json!([]),
    )
    .await;
    s.click("#ab-call").await;
    s.wait_text("return document.getElementById('jobs').innerText", |t| t.contains("done: errcode 0")).await;

    // Faults and the clock act on the zone.
    s.type_into("#fault-api", "sync_msg").await;
    s.click("#fault-arm").await;
    s.wait_text("return document.getElementById('faults').textContent", |t| t.contains("sync_msg: 1 pending")).await;
    s.click("#fault-clear").await;
    s.wait_text("return document.getElementById('faults').textContent", |t| t == "no fault armed").await;
    let before = env.zone.clock.now();
    s.click("#clock-advance").await;
    poll(|| async { json!(env.zone.clock.now()) }, |now| now.as_i64().unwrap() >= before + 600).await;

    s.js("window.scrollTo(0, 0)", json!([])).await;
    s.screenshot(&shots, "console.png").await;
    s.quit().await;
    eprintln!("console screenshots: {}", shots.display());
}

#[tokio::test]
async fn local_events_names_every_missing_field_at_once() {
    let env = TestEnv::spawn().await;
    let r = env.control("events", json!({"event_type": "knowledge_base_learn_done"})).await;
    assert_eq!(r["errcode"], 40058);
    let msg = r["errmsg"].as_str().unwrap();
    assert!(msg.contains("missing: knowledge_base_id, doc_id"), "{msg}");
    let r = env.control("events", json!({"event_type": "no_such_event"})).await;
    assert!(r["errmsg"].as_str().unwrap().contains("chat_archive_export_finished"), "{r}");
}

#[tokio::test]
async fn the_debug_mode_apis_say_plainly_that_the_local_zone_lacks_them() {
    let env = TestEnv::spawn().await;
    let r = env.app_post("open_debug_mode", &json!({"program_id": crate::helpers::PROGRAM, "debug_token": "x"})).await;
    assert!(r["errmsg"].as_str().unwrap().contains("does not emulate debug mode"), "{r}");
}
