//! The GUI: the files `npm run build` writes to `gui/dist`, embedded when
//! the library is built (see `build.rs`) and served under `/gui/`. The
//! GUI reads the public HTTP API only, with the browser user's
//! credentials; its own files need none. Without the files (a plain
//! `cargo build` on a machine that never ran npm) `/gui/` says how to
//! build them.

use super::ApiError;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

/// (path under `gui/dist`, contents), in path order.
static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/gui_files.rs"));

const NOT_BUILT: &str = "the GUI was not built into this kuma-cp: run `make gui` (npm ci and npm run build in gui/), then build kuma-cp again; `make run` does both";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map_or("", |(_, ext)| ext) {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "json" => "application/json",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// `/gui` → `/gui/`, so that the page's relative links resolve.
pub async fn to_gui() -> Redirect {
    Redirect::permanent("/gui/")
}

/// `/gui/` (the page) and `/gui/{path}` (its scripts, styles and fonts).
pub async fn asset(path: Option<Path<String>>) -> Result<Response, ApiError> {
    if FILES.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "GUI not built",
            NOT_BUILT,
        ));
    }
    let path = path.map_or_else(|| "index.html".to_string(), |Path(p)| p);
    let Ok(at) = FILES.binary_search_by(|(p, _)| (*p).cmp(path.as_str())) else {
        return Err(ApiError::not_found(format!(
            "the GUI has no file \"{path}\"; open /gui/"
        )));
    };
    let (name, body) = FILES[at];
    // Vite names what it bundles after a hash of its contents: those never
    // change; the page itself must be fetched afresh to find new ones.
    let cache = if name.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(name)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok((headers, body).into_response())
}

/// The server of `guiServer.port`: every request is sent to `/gui/` of
/// the HTTP API, on the host the browser asked for.
pub fn redirect_router(api_port: u16) -> Router {
    Router::new().fallback(move |headers: HeaderMap| async move {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(host_without_port)
            .unwrap_or("localhost");
        Redirect::temporary(&format!("http://{host}:{api_port}/gui/"))
    })
}

/// `example:5683` → `example`, `[::1]:5683` → `[::1]`.
fn host_without_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_keeps_the_host_and_drops_its_port() {
        assert_eq!(host_without_port("cp.example:5683"), "cp.example");
        assert_eq!(host_without_port("cp.example"), "cp.example");
        assert_eq!(host_without_port("[::1]:5683"), "[::1]");
        assert_eq!(host_without_port("[::1]"), "[::1]");
    }

    #[test]
    fn embedded_files_are_in_path_order_for_the_lookup() {
        assert!(FILES.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
