//! Headless Chromium over WebDriver (Debian's chromedriver), one session per user.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::deadline::{within, within_for};

/// How long a page (or a browser session) may take to load.
const PAGE_LOAD: Duration = Duration::from_secs(30);

/// A chromedriver process; sessions are opened from it.
pub struct Browser {
    driver: Child,
    url: String,
}

impl Browser {
    /// Starts chromedriver on a free port and waits until it answers. It leads a
    /// process group of its own, and every Chromium it starts joins that group, so
    /// dropping the `Browser` can end them all, even if a session was never closed.
    pub async fn start() -> Browser {
        let port = crate::free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver (apt install chromium-driver; `cargo xtask test` does)");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while within("chromedriver answering", tokio::net::TcpStream::connect(("127.0.0.1", port)))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Browser { driver, url }
    }

    /// A fresh headless Chromium with its own profile.
    pub async fn page(&self, name: &str) -> Page {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                         "--window-size=1000,700"],
            }),
        );
        let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(capabilities);
        let connecting = builder.connect(&self.url);
        let client =
            within_for(PAGE_LOAD, "a WebDriver session", connecting).await.expect("a WebDriver session");
        Page { client, name: name.to_owned() }
    }
}

impl Drop for Browser {
    /// Kills chromedriver's whole process group (the browsers it started included) and
    /// checks that nothing of it is left: a test that leaks a browser fails here.
    fn drop(&mut self) {
        let group = self.driver.id();
        let kill_group = || {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status();
        };
        kill_group();
        let _ = self.driver.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = processes_in_group(group);
        while !left.is_empty() && Instant::now() < deadline {
            kill_group();
            std::thread::sleep(Duration::from_millis(50));
            left = processes_in_group(group);
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("browser processes still running after chromedriver was stopped: {left:?}");
        }
    }
}

/// Live (not zombie) processes whose process group is `group`, from `/proc`.
fn processes_in_group(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // Fields after the parenthesised command: state, ppid, pgrp, ...
            let Some((_, rest)) = stat.rsplit_once(") ") else { return false };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first().is_some_and(|state| *state != "Z")
                && fields.get(2) == Some(&group.to_string().as_str())
        })
        .collect()
}

/// One user's browser tab.
pub struct Page {
    /// The WebDriver session.
    pub client: Client,
    /// Who, for messages and screenshot names.
    pub name: String,
}

impl Page {
    /// Opens the app through `base` as this user.
    pub async fn open(&self, base: &str) {
        let url = format!("{base}/?name={}", self.name);
        within_for(PAGE_LOAD, "the page loading", self.client.goto(&url)).await.unwrap();
    }

    /// Opens the app through `base` as this user, with more of the query string
    /// (`endpoints=…`).
    pub async fn open_with(&self, base: &str, query: &str) {
        self.open_at(base, "/", query).await;
    }

    /// Opens another page of the demo through `base` as this user: one of its own
    /// bundle (`/poker`), with more of the query string (`table=…`).
    pub async fn open_at(&self, base: &str, path: &str, query: &str) {
        let url = format!("{base}{path}?name={}&{query}", self.name);
        within_for(PAGE_LOAD, "the page loading", self.client.goto(&url)).await.unwrap();
    }

    /// Runs `script` (a function body) and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        within("a script's answer", self.client.execute(script, vec![])).await.unwrap()
    }

    /// Re-checks `condition` (a JS expression) until it is true; panics with `what` after
    /// `limit`. WebDriver has no push events, so this is how a test awaits the page.
    pub async fn until(&self, what: &str, limit: Duration, condition: &str) -> Duration {
        let started = Instant::now();
        let script = format!("return !!({condition});");
        loop {
            if self.js(&script).await == Value::Bool(true) {
                return started.elapsed();
            }
            assert!(started.elapsed() < limit, "{}: timed out after {limit:?} waiting for {what}", self.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Signs in to the dashboard (`/admin`, already opened) with `key`. The page's load
    /// event comes before the app has drawn its form, so the form is awaited first.
    pub async fn sign_in_to_dashboard(&self, key: &str) {
        let form = "document.querySelector('#api-key') && document.querySelector('.sign-in button')";
        self.until("the dashboard's sign-in form", Duration::from_secs(20), form).await;
        self.js(&format!(
            "document.querySelector('#api-key').value = {key:?}; document.querySelector('.sign-in button').click(); return true;"
        ))
        .await;
    }

    /// Texts of every element matching `selector`.
    pub async fn texts(&self, selector: &str) -> Vec<String> {
        let script =
            format!("return Array.from(document.querySelectorAll({selector:?})).map(e => e.textContent);");
        match self.js(&script).await {
            Value::Array(items) => items.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        }
    }

    /// Types `text` into the composer and presses Enter.
    pub async fn say(&self, text: &str) {
        self.type_only(&format!("{text}\u{E007}")).await;
    }

    /// Types into the composer without sending.
    pub async fn type_only(&self, text: &str) {
        let input = within("the composer", self.client.find(Locator::Css(".composer-input"))).await.unwrap();
        within("typing", input.send_keys(text)).await.unwrap();
    }

    /// Saves a screenshot as `target/e2e-artifacts/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = within("a screenshot", self.client.screenshot()).await.unwrap();
        std::fs::write(crate::artifacts().join(format!("{name}.png")), png).unwrap();
    }

    /// The message texts shown, in order.
    pub async fn messages(&self) -> Vec<String> {
        self.texts(".message .text").await
    }

    /// Ends the session.
    pub async fn close(self) {
        let _ = within("the session closing", self.client.close()).await;
    }
}
