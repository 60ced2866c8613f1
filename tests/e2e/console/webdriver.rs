//! A small W3C WebDriver client over `reqwest`, for the console's browser tests: it starts
//! Debian's `chromedriver` (Chromium) or `geckodriver` (Firefox ESR) on a loopback port,
//! opens one headless session and speaks the dozen commands the tests use (navigate, find,
//! click, type, read, run a script, resize, screenshot, browser log). The same test code
//! drives both browsers; only the session's capabilities and the way the browser's console
//! is read differ.
//!
//! Hand-written rather than `fantoccini` because that crate pulls in the `webdriver` crate
//! and a second HTTP/TLS stack for these few JSON calls; `reqwest` is already here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use posbridge_harness::eventually;
use posbridge_harness::reqwest;
use serde_json::{json, Value};

/// The key of an element reference in W3C answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long a wait for something on the page may take: a debug server on a loaded CI
/// machine answers in well under this.
pub const WAIT: Duration = Duration::from_secs(20);

/// A browser the walkthrough runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Debian's `chromium` with `chromium-driver`.
    Chromium,
    /// Debian's `firefox-esr` with `geckodriver` (from crates.io).
    Firefox,
}

impl Kind {
    /// Whether pages render in the dark colour scheme in this browser's sessions.
    pub fn dark(self) -> bool {
        self == Kind::Firefox
    }

    /// Lower-case name, for screenshot directories.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Chromium => "chromium",
            Kind::Firefox => "firefox",
        }
    }
}

/// The WebDriver and browser binaries of `kind`, or `None` when
/// `POSBRIDGE_TEST_BROWSER=skip`; panics with a one-line explanation when they are missing.
pub fn locate(kind: Kind) -> Option<(PathBuf, PathBuf)> {
    if std::env::var("POSBRIDGE_TEST_BROWSER").as_deref() == Ok("skip") {
        eprintln!("POSBRIDGE_TEST_BROWSER=skip: console browser test skipped");
        return None;
    }
    let find = |names: &[PathBuf]| names.iter().find(|p| p.is_file()).cloned();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin"));
    let (driver, browser, install) = match kind {
        Kind::Chromium => (
            find(&[
                "/usr/bin/chromedriver".into(),
                "/usr/lib/chromium/chromedriver".into(),
            ]),
            find(&[
                "/usr/bin/chromium".into(),
                "/usr/lib/chromium/chromium".into(),
            ]),
            "apt-get install chromium chromium-driver",
        ),
        Kind::Firefox => {
            let mut drivers = vec![
                PathBuf::from("/usr/local/bin/geckodriver"),
                "/usr/bin/geckodriver".into(),
            ];
            drivers.extend(cargo_bin.map(|b| b.join("geckodriver")));
            (
                find(&drivers),
                find(&["/usr/bin/firefox-esr".into(), "/usr/bin/firefox".into()]),
                "apt-get install firefox-esr; cargo install geckodriver --locked",
            )
        }
    };
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        _ => panic!(
            "the console browser test in {} needs the browser and its WebDriver: {install} (or set POSBRIDGE_TEST_BROWSER=skip)",
            kind.name()
        ),
    }
}

/// Installed on each page (Firefox only: its WebDriver has no log endpoint): keeps what
/// the browser's console would show as an error, for [`Browser::console_log`].
const RECORDER: &str = "if (!window.__pbLog) { window.__pbLog = [];
  window.addEventListener('error', e => window.__pbLog.push('SEVERE Uncaught ' + e.message));
  window.addEventListener('unhandledrejection', e => window.__pbLog.push('SEVERE Uncaught (in promise) ' + e.reason));
  document.addEventListener('securitypolicyviolation', e => window.__pbLog.push('SEVERE Content Security Policy blocked ' + e.blockedURI + ' (' + e.violatedDirective + ')')); }";

/// The focused element: its tag, its accessible text, and whether a focus outline is drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Focus {
    /// Lower-case tag name (`a`, `button`, `main`…).
    pub tag: String,
    /// `aria-label`, else its text or value, trimmed.
    pub name: String,
    /// Whether the browser draws an outline around it (our `:focus-visible` style).
    pub outline_visible: bool,
}

/// A running WebDriver with one browser session; both end on drop.
pub struct Browser {
    kind: Kind,
    http: reqwest::Client,
    /// `http://127.0.0.1:port/session/{id}`.
    session: String,
    driver: Child,
    shots: PathBuf,
}

impl Browser {
    /// Starts the WebDriver and a headless session of `kind`; screenshots go to `shots`.
    pub async fn start(kind: Kind, driver: &Path, browser: &Path, shots: PathBuf) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        eventually(WAIT, "the WebDriver to answer /status", || {
            let http = http.clone();
            let url = format!("{base}/status");
            async move {
                let v: Value = http.get(url).send().await.ok()?.json().await.ok()?;
                v["value"]["ready"].as_bool().filter(|r| *r)
            }
        })
        .await;
        let caps = match kind {
            Kind::Chromium => json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "unhandledPromptBehavior": "accept",
                "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {
                    "binary": browser.to_string_lossy(),
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--window-size=1280,1000", "--no-first-run", "--lang=en-US"]
                }
            }}}),
            Kind::Firefox => json!({"capabilities": {"alwaysMatch": {
                "browserName": "firefox",
                "unhandledPromptBehavior": "accept",
                "moz:firefoxOptions": {
                    "binary": browser.to_string_lossy(),
                    "args": ["-headless", "--width=1280", "--height=1000"],
                    // Firefox renders pages in the dark scheme (0 = dark), Chromium in the
                    // light one: the walkthroughs audit the contrast of both.
                    "prefs": {"intl.accept_languages": "en-US", "intl.locale.requested": "en-US",
                              "layout.css.prefers-color-scheme.content-override": 0}
                }
            }}}),
        };
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("new session answer");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("the WebDriver refused a session: {answer}"))
            .to_owned();
        std::fs::create_dir_all(&shots).expect("screenshot dir");
        Browser {
            kind,
            http,
            session: format!("{base}/session/{id}"),
            driver: child,
            shots,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let answer: Value = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body)).await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
        if self.kind == Kind::Firefox {
            self.script(RECORDER, json!([])).await;
        }
    }

    /// Resizes the window (CSS pixels), e.g. to a tablet's viewport.
    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// The element that has the keyboard focus, as a keyboard user perceives it.
    pub async fn focused(&self) -> Focus {
        let v = self
            .script(
                "const e = document.activeElement || document.body;
return [e.tagName.toLowerCase(), (e.getAttribute('aria-label') || e.innerText || e.value || '').trim(),
        getComputedStyle(e).outlineStyle !== 'none' && parseFloat(getComputedStyle(e).outlineWidth) > 0];",
                json!([]),
            )
            .await;
        Focus {
            tag: v[0].as_str().unwrap_or_default().to_owned(),
            name: v[1].as_str().unwrap_or_default().to_owned(),
            outline_visible: v[2].as_bool().unwrap_or(false),
        }
    }

    /// Presses Tab (or Shift+Tab) as a keyboard user would.
    pub async fn tab(&self, back: bool) {
        const SHIFT: &str = "\u{E008}";
        const TAB: &str = "\u{E004}";
        let mut down = Vec::new();
        if back {
            down.push(json!({"type": "keyDown", "value": SHIFT}));
        }
        down.push(json!({"type": "keyDown", "value": TAB}));
        down.push(json!({"type": "keyUp", "value": TAB}));
        if back {
            down.push(json!({"type": "keyUp", "value": SHIFT}));
        }
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": down}]}),
        )
        .await;
        self.command(reqwest::Method::DELETE, "/actions", None)
            .await;
    }

    /// Presses Enter on the focused element.
    pub async fn enter(&self) {
        const ENTER: &str = "\u{E007}";
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": ENTER}, {"type": "keyUp", "value": ENTER}]}]}),
        )
        .await;
        self.command(reqwest::Method::DELETE, "/actions", None)
            .await;
    }

    /// The element matching `css` now, if any.
    async fn find(&self, using: &str, value: &str) -> Option<String> {
        let v = self
            .post("/element", json!({"using": using, "value": value}))
            .await;
        v[ELEMENT].as_str().map(str::to_owned)
    }

    /// Waits for an element matching `css` and answers its reference.
    async fn element(&self, using: &str, value: &str) -> String {
        eventually(WAIT, &format!("element {value}"), || {
            self.find(using, value)
        })
        .await
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        let el = self.element("css selector", css).await;
        self.post(&format!("/element/{el}/click"), json!({})).await;
    }

    /// Clicks the button whose text is `label`.
    pub async fn click_button(&self, label: &str) {
        let xpath = format!("//button[normalize-space()='{label}']");
        let el = self.element("xpath", &xpath).await;
        self.post(&format!("/element/{el}/click"), json!({})).await;
    }

    /// Replaces the value of the field matching `css` by typing `text`.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.element("css selector", css).await;
        self.post(&format!("/element/{el}/clear"), json!({})).await;
        self.post(&format!("/element/{el}/value"), json!({"text": text}))
            .await;
    }

    /// Chooses `value` in the `<select>` matching `css` (as a user would, firing `change`).
    pub async fn select(&self, css: &str, value: &str) {
        self.element("css selector", css).await;
        self.script(
            "const s = document.querySelector(arguments[0]); s.value = arguments[1]; s.dispatchEvent(new Event('change'));",
            json!([css, value]),
        )
        .await;
    }

    /// Runs `script` with `args` in the page; it answers by calling its last argument
    /// (WebDriver's asynchronous script), which lets a page-side promise settle.
    pub async fn script_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    /// Runs axe-core over the page as it is now and answers the WCAG 2.1 A and AA rules
    /// it finds broken (missing labels, too little contrast, bad ARIA…), one line each
    /// with the offending elements. `axe` is the engine's source (see [`axe_source`]).
    pub async fn accessibility_violations(&self, axe: &str) -> Vec<String> {
        let run = format!(
            "{axe}\n;const done = arguments[arguments.length - 1];
axe.run(document, {{ runOnly: {{ type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }} }})
  .then(r => done(r.violations.map(v => `${{v.id}} (${{v.impact}}): ${{v.help}} at ${{v.nodes.slice(0, 4).map(n => n.target.join(' ')).join(', ')}}`)))
  .catch(e => done(['axe failed: ' + e]));"
        );
        let found = self.script_async(&run, json!([])).await;
        found
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_else(|| vec![format!("unexpected axe answer: {found}")])
    }

    /// Runs `script` with `args` in the page and answers its return value.
    pub async fn script(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// The text of the first element matching `css`, or "" when there is none.
    pub async fn text(&self, css: &str) -> String {
        self.script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
            json!([css]),
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until the text of `css` contains `needle`, and answers that text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        eventually(WAIT, &format!("{css} to show {needle:?}"), || async {
            let text = self.text(css).await;
            text.contains(needle).then_some(text)
        })
        .await
    }

    /// Saves a PNG of the window as `{name}.png` in the screenshot directory, after
    /// checking the page shows no value the console failed to format.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let text = self.text("#view").await;
        for bad in ["undefined", "NaN", "[object "] {
            assert!(!text.contains(bad), "page {name} shows {bad:?}:\n{text}");
        }
        let v = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot data"))
            .expect("screenshot base64");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing screenshot");
        path
    }

    /// The browser console's messages since the last call: chromedriver's log endpoint, or
    /// in Firefox (whose WebDriver has none) what [`RECORDER`] kept of errors, unhandled
    /// rejections and policy violations since the page was opened.
    pub async fn console_log(&self) -> Vec<String> {
        if self.kind == Kind::Firefox {
            let v = self
                .script(
                    "const l = window.__pbLog || []; window.__pbLog = []; return l;",
                    json!([]),
                )
                .await;
            return v
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|m| m.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
        }
        let v = self.post("/se/log", json!({"type": "browser"})).await;
        v.as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| format!("{} {}", e["level"], e["message"]))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session ends the browser (killing the driver alone could leave it
        // running). Drop cannot await, so this is one plain blocking HTTP request.
        if let Some((host, path)) = self
            .session
            .strip_prefix("http://")
            .and_then(|rest| rest.split_once('/'))
        {
            if let Ok(mut stream) = std::net::TcpStream::connect(host) {
                use std::io::{Read, Write};
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!(
                    "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                if stream.write_all(request.as_bytes()).is_ok() {
                    let _ = stream.read_to_end(&mut Vec::new());
                }
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// axe-core's source, the version pinned by `tests/e2e/console/a11y/package-lock.json`,
/// installed with `npm ci` (which checks the lock's integrity hash) into the test target's
/// temporary directory on first use. The four walkthroughs may ask at once: each installs
/// into its own directory and renames it into place, and a loser of the race uses the
/// winner's copy. Panics with the reason when npm cannot install it.
pub fn axe_source() -> String {
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/console/a11y");
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let lock = std::fs::read(pinned.join("package-lock.json")).expect("the a11y lock file");
    // Keyed by the lock's contents, so changing the pinned version installs afresh.
    let key = lock.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let installed = root.join(format!("console-a11y-{key:016x}"));
    let script = |dir: &Path| dir.join("node_modules/axe-core/axe.min.js");
    if !script(&installed).is_file() {
        let building = root.join(format!(
            "console-a11y-{key:016x}.building-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building).expect("a directory for axe-core");
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(pinned.join(file), building.join(file)).expect("copying the pin");
        }
        let out = Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&building)
            .output()
            .unwrap_or_else(|e| {
                panic!("the console's accessibility check needs npm to install axe-core: {e} (or set POSBRIDGE_TEST_BROWSER=skip)")
            });
        assert!(
            out.status.success(),
            "npm ci (axe-core for the accessibility check) failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        if std::fs::rename(&building, &installed).is_err() {
            let _ = std::fs::remove_dir_all(&building);
        }
    }
    std::fs::read_to_string(script(&installed)).unwrap_or_else(|e| {
        panic!(
            "axe-core missing at {} after the install: {e}",
            installed.display()
        )
    })
}
