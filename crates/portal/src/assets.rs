//! The stylesheet and scripts, built into the binary: the portal needs no CDN and no
//! files beside the executable. htmx 2 and its SSE extension are vendored from npm
//! (`htmx.org`, `htmx-ext-sse`; see `assets/VENDORED.md`).

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::routes::PageError;

const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/style.css"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/htmx.min.js"),
    ),
    (
        "discover.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/discover.js"),
    ),
    (
        "htmx-ext-sse.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/htmx-ext-sse.min.js"),
    ),
];

pub(crate) async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(file, _, _)| *file == name) {
        // Pages link assets with `?v=VERSION`, so a day's caching never serves a stale one.
        Some((_, content_type, bytes)) => (
            [
                (CONTENT_TYPE, *content_type),
                (CACHE_CONTROL, "public, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => PageError::NotFound.into_response(),
    }
}
