//! Pages in headless Chromium, driven over WebDriver (chromedriver). The chat:
//! two browsers open the page, one sends, the other shows the message — once
//! over websockets, once over long polling. The blog: its first author, an
//! entry, signing out and in.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cyclone_tests::{Cyclone, components, example_manifest};
use fantoccini::{Client, ClientBuilder, Locator};

/// A chromedriver process on a free port; killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver: install chromium and chromium-driver (.ci/run does)");
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, url }
    }

    /// A new headless browser.
    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session from chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a test's browser steps to the end.
fn block_on(steps: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(steps);
}

/// The text of `#status` once it reads `expected`.
async fn wait_status(browser: &Client, expected: &str) {
    let started = Instant::now();
    loop {
        let status = browser
            .find(Locator::Id("status"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if status == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "status stayed {status:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `browser` shows a message reading `text`.
async fn wait_message(browser: &Client, text: &str) -> Duration {
    let started = Instant::now();
    loop {
        for message in browser.find_all(Locator::Css(".message")).await.unwrap() {
            if message.text().await.unwrap() == text {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{text:?} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two browsers on the chat page with `?transport=`; one posts through the
/// form, the other must show it.
async fn two_browsers(
    server: &Cyclone,
    driver: &Driver,
    transport: &str,
    status: &str,
    text: &str,
) {
    let url = server.url(&format!("/?transport={transport}"));
    let (sender, receiver) = (driver.browser().await, driver.browser().await);
    for browser in [&sender, &receiver] {
        browser.goto(&url).await.unwrap();
        wait_status(browser, status).await;
    }
    let input = sender.find(Locator::Id("message")).await.unwrap();
    input.send_keys(text).await.unwrap();
    sender
        .find(Locator::Css("#messageform button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let took = wait_message(&receiver, text).await;
    println!("{transport}: the other browser showed the message after {took:?}");
    wait_message(&sender, text).await;
    sender.close().await.unwrap();
    receiver.close().await.unwrap();
}

#[test]
fn two_browsers_chat_over_websockets_and_long_polling() {
    let (_dir, path) = example_manifest("chat", components::CHAT, &[]);
    let server = Cyclone::serve(&path);
    let driver = Driver::start();
    block_on(async {
        two_browsers(
            &server,
            &driver,
            "websocket",
            "connected: websocket",
            "hello over a websocket",
        )
        .await;
        two_browsers(
            &server,
            &driver,
            "poll",
            "connected: long polling",
            "hello over long polling",
        )
        .await;
    });
    assert!(
        server
            .log()
            .iter()
            .any(|line| line.contains("websocket session opened"))
    );
}

/// Fills the form field `name` with `text`.
async fn fill(browser: &Client, name: &str, text: &str) {
    browser
        .find(Locator::Css(&format!("[name=\"{name}\"]")))
        .await
        .unwrap_or_else(|e| panic!("no field {name}: {e}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// Clicks the element `what` finds.
async fn click(browser: &Client, what: Locator<'_>) {
    browser
        .find(what)
        .await
        .unwrap_or_else(|e| panic!("nothing to click: {e}"))
        .click()
        .await
        .unwrap();
}

/// Submits the page's form.
async fn submit(browser: &Client) {
    click(browser, Locator::Css("input[type=submit]")).await;
}

/// Waits until the browser is at `path` (path and query).
async fn wait_at(browser: &Client, server: &Cyclone, path: &str) {
    let started = Instant::now();
    let expected = server.url(path);
    loop {
        let url = browser.current_url().await.unwrap();
        if url.as_str() == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the browser stayed at {url}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The blog as its first author meets it: from an empty home page to the
/// form that creates the author, then composing an entry that shows on the
/// home page and in the feed; signing out, a wrong password, and back in.
#[test]
fn a_browser_creates_the_author_writes_an_entry_and_signs_in_again() {
    let (dir, path) = example_manifest("blog", components::BLOG, &[]);
    let server = Cyclone::serve(&path).keeping(dir);
    let driver = Driver::start();
    block_on(async {
        let browser = driver.browser().await;
        // No entries: / → /compose → the login → creating the author.
        browser.goto(&server.url("/")).await.unwrap();
        wait_at(&browser, &server, "/auth/create?next=%2Fcompose").await;
        fill(&browser, "email", "ada@example.com").await;
        fill(&browser, "name", "Ada").await;
        fill(&browser, "password", "correct horse battery").await;
        submit(&browser).await;
        wait_at(&browser, &server, "/compose").await;

        fill(&browser, "title", "Hello, Storm!").await;
        fill(&browser, "markdown", "Written in a *browser*.").await;
        submit(&browser).await;
        wait_at(&browser, &server, "/entry/hello-storm").await;
        let emphasis = browser.find(Locator::Css(".entry .body em")).await.unwrap();
        assert_eq!(emphasis.text().await.unwrap(), "browser");

        browser.goto(&server.url("/")).await.unwrap();
        let title = browser.find(Locator::Css(".entry h1 a")).await.unwrap();
        assert_eq!(title.text().await.unwrap(), "Hello, Storm!");
        let feed = server.get("/feed");
        assert!(
            feed.body
                .contains("<title type=\"text\">Hello, Storm!</title>")
        );

        // Out, then a wrong password, then in again, back where we were.
        click(&browser, Locator::LinkText("Sign out")).await;
        wait_at(&browser, &server, "/").await;
        click(&browser, Locator::LinkText("Sign in")).await;
        wait_at(&browser, &server, "/auth/login?next=%2F").await;
        fill(&browser, "email", "ada@example.com").await;
        fill(&browser, "password", "wrong").await;
        submit(&browser).await;
        let error = browser
            .wait()
            .for_element(Locator::Css(".error"))
            .await
            .unwrap();
        assert_eq!(error.text().await.unwrap(), "Error: incorrect password");
        fill(&browser, "email", "ada@example.com").await;
        fill(&browser, "password", "correct horse battery").await;
        submit(&browser).await;
        wait_at(&browser, &server, "/").await;
        browser
            .find(Locator::LinkText("Edit this post"))
            .await
            .expect("signed in again, the author may edit");
        browser.close().await.unwrap();
    });
}
