//! {{name}}: a web app. Routes are tried in order and the first match wins;
//! a handler has one method per HTTP verb (others get 405).

use cyclone_sdk::{Application, Handler, HttpError, Request, Response, handler_impl};

/// `/hello/{name}`.
struct Greeting;

#[handler_impl]
impl Handler for Greeting {
    async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let name: String = req.param("name")?;
        Ok(Response::text(format!("Hello, {name}!\n")))
    }
}

#[cyclone_sdk::handler]
async fn handle(req: Request) -> Response {
    Application::new()
        .get("/", async |_: &mut Request| {
            Response::html("<h1>{{name}}</h1><p>Try <a href=\"/hello/world\">/hello/world</a>.</p>\n")
        })
        .route("/hello/{name}", Greeting)
        .handle(req)
        .await
}
