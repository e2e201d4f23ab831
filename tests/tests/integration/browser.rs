//! The chat page in headless Chromium, driven over WebDriver (chromedriver):
//! two browsers open the page, one sends, the other shows the message — once
//! over websockets, once over long polling.

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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
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
