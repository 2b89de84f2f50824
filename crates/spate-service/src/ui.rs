//! The web UI: pages and assets compiled into the binary (`ui/`), served
//! by the server itself; no build step, nothing fetched from elsewhere.
//!
//! A browser cannot add a bearer token to a page load, so signing in
//! (`POST /login` with the token) opens a session: a random id in an
//! `HttpOnly`, `SameSite=Strict` cookie (`Secure` over HTTPS) that the
//! server accepts in place of the header. The token itself never goes in a
//! cookie (cookies are not kept apart by port), and a change made with the
//! cookie must come from the server's own pages (`Origin`). The pages call
//! the same REST API as the CLI.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::App;

const INDEX: &str = include_str!("../ui/index.html");
const LOGIN: &str = include_str!("../ui/login.html");
const APP_JS: &str = include_str!("../ui/app.js");
const APP_CSS: &str = include_str!("../ui/app.css");

/// The cookie holding a signed-in browser's token.
pub(crate) const COOKIE: &str = "spate_token";

/// Pages and assets.
pub(crate) fn routes() -> Router<App> {
    Router::new()
        .route("/", get(page))
        .route("/jobs/{id}", get(page))
        .route("/clusters", get(page))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
}

/// Whether `path` is served without signing in: the sign-in page and the
/// static assets (code and style, no data).
pub(crate) fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/ui/")
}

/// Whether a browser's request comes from this server's own pages: its
/// `Origin` (or else `Referer`) names the host the request was sent to.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let from = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    from.and_then(|f| f.split_once("://"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or_default())
        .is_some_and(|origin_host| origin_host.eq_ignore_ascii_case(host))
}

/// Whether `path` is a page (a browser is sent to sign in), not the API.
pub(crate) fn is_page(path: &str) -> bool {
    path == "/" || path == "/clusters" || path.starts_with("/jobs/")
}

/// The session id in the request's cookie, if any.
pub(crate) fn cookie_session(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn html(body: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    secure_headers(response.headers_mut());
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

async fn page() -> Response {
    html(INDEX.to_string())
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

#[derive(Deserialize)]
struct LoginQuery {
    #[serde(default)]
    failed: Option<String>,
}

async fn login_page(axum::extract::Query(query): axum::extract::Query<LoginQuery>) -> Response {
    let error = if query.failed.is_some() {
        "That is not this server's token."
    } else {
        ""
    };
    html(LOGIN.replace("{{error}}", error))
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

async fn login(State(app): State<App>, axum::Form(form): axum::Form<SignIn>) -> Response {
    let Some(expected) = app.token.as_deref() else {
        return Redirect::to("/").into_response();
    };
    if !crate::api::same(form.token.trim().as_bytes(), expected.as_bytes()) {
        // Post, redirect, get: the form again, saying why.
        return Redirect::to("/login?failed=1").into_response();
    }
    let session = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    app.sessions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(session.clone());
    let secure = if app.https { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/{secure}");
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie_session(&headers) {
        app.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(session);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("spate_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}
