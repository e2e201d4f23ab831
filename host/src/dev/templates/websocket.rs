//! {{name}}: a websocket app. Each session at `/echo` gets its own instance
//! for as long as it lasts, suspended while it waits for a message.

use cyclone_sdk::websocket::{WebSocket, WebSocketHandler};
use cyclone_sdk::{Application, Request, Response};

/// Sends every message back.
struct Echo;

impl WebSocketHandler for Echo {
    async fn run(&mut self, mut ws: WebSocket, _req: &mut Request) {
        while let Some(message) = ws.recv().await {
            if ws.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// A page that talks to `/echo`.
const PAGE: &str = r#"<!doctype html>
<title>{{name}}</title>
<input id="text" placeholder="Say something" autofocus>
<pre id="log"></pre>
<script>
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/echo`);
  const log = (line) => (document.getElementById("log").textContent += line + "\n");
  ws.onmessage = (event) => log("< " + event.data);
  document.getElementById("text").onkeydown = (event) => {
    if (event.key === "Enter") {
      ws.send(event.target.value);
      log("> " + event.target.value);
      event.target.value = "";
    }
  };
</script>
"#;

#[cyclone_sdk::app]
fn app() -> Application {
    Application::new()
        .get("/", async |_: &mut Request| Response::html(PAGE))
        .websocket("/echo", Echo)
}
