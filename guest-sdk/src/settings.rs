//! What an [`Application`](crate::Application) tells the requests it
//! serves: where its cookie keys come from, whether XSRF is checked, which
//! cookie names the current user and where to log in.

use std::cell::OnceCell;

use crate::HttpError;
use crate::cookies::CookieKeys;

/// The cookie (and form field) holding the XSRF token.
pub(crate) const XSRF_COOKIE: &str = "_xsrf";

/// The signed cookie holding the current user when the application names
/// no other, as in Tornado's demos.
pub(crate) const USER_COOKIE: &str = "user";

/// Reads an app variable: [`crate::variables::get`].
pub(crate) type ReadVariable = fn(&str) -> Option<String>;

/// Settings requests consult: the cookie keys, whether XSRF is checked, the
/// current user's cookie and where to log in.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    /// The app variable holding the cookie secret, and the function that
    /// reads variables. The function is set only by
    /// [`Application::cookie_secret_variable`](crate::Application::cookie_secret_variable),
    /// so a component whose application names no secret does not import
    /// the host's variables interface: it stays smaller, and it runs on any
    /// WASI host.
    pub(crate) cookie_secret: Option<(String, ReadVariable)>,
    cookie_keys: OnceCell<Result<CookieKeys, HttpError>>,
    pub(crate) xsrf_cookies: bool,
    pub(crate) user_cookie: Option<String>,
    pub(crate) login_url: Option<String>,
}

impl Settings {
    /// The keys from the cookie secret variable, read once per request.
    pub(crate) fn cookie_keys(&self) -> Result<&CookieKeys, HttpError> {
        self.cookie_keys
            .get_or_init(|| {
                let Some((name, read)) = &self.cookie_secret else {
                    return Err(HttpError::internal(
                        "signed cookies need Application::cookie_secret_variable",
                    ));
                };
                let value = read(name).ok_or_else(|| {
                    HttpError::internal(format!(
                        "signed cookies need the app variable `{name}` in the manifest"
                    ))
                })?;
                CookieKeys::parse(&value)
                    .map_err(|e| HttpError::internal(format!("app variable `{name}`: {e}")))
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}
