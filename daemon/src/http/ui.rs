//! The embedded web UI (`webui-dist/`), revalidated by ETag.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every file gzipped (`NAME.gz`) by build.rs.
#[derive(rust_embed::RustEmbed)]
#[folder = "$OUT_DIR/webui/"]
pub(super) struct WebUi;

pub(super) const UI_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded UI, sent as stored (gzipped) to every client that accepts gzip and
/// unpacked for the others. Files are revalidated by ETag (their names carry no version,
/// so a long max-age would keep an old UI after an upgrade); icons may be cached for a day.
/// Unknown paths get `index.html`, the app's single page.
pub(super) async fn web_ui(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let found = WebUi::get(&format!("{path}.gz"))
        .map(|f| (path, f))
        .or_else(|| WebUi::get("index.html.gz").map(|f| ("index.html", f)));
    let Some((name, file)) = found else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let (etag, common) = common_headers(name, &file);
    let vary = [(header::VARY, "Accept-Encoding")];
    if revalidated(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, common, vary).into_response();
    }
    let mime = mime_guess::from_path(name)
        .first_or_octet_stream()
        .to_string();
    let content_type = (header::CONTENT_TYPE, mime);
    if accepts_gzip(&headers) {
        let encoding = (header::CONTENT_ENCODING, "gzip".to_string());
        return (
            common,
            vary,
            [content_type, encoding],
            file.data.into_owned(),
        )
            .into_response();
    }
    let mut plain = Vec::new();
    match std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&file.data[..]),
        &mut plain,
    ) {
        Ok(_) => (common, vary, [content_type], plain).into_response(),
        Err(e) => {
            tracing::error!("embedded UI file {name} does not unpack: {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, "damaged UI file").into_response()
        }
    }
}

/// Whether `Accept-Encoding` allows gzip (named, without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let named = parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip"));
            named && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

fn common_headers(
    name: &str,
    file: &rust_embed::EmbeddedFile,
) -> (String, [(header::HeaderName, String); 6]) {
    // Weak: the gzipped and the unpacked bytes are one file in two encodings.
    let etag = format!(
        "W/\"{}\"",
        file.metadata.sha256_hash()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let cache = if name.ends_with(".png") || name.ends_with(".svg") {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    let common = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, cache.to_string()),
        (header::CONTENT_SECURITY_POLICY, UI_CSP.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        (header::REFERRER_POLICY, "no-referrer".to_string()),
        (header::X_FRAME_OPTIONS, "DENY".to_string()),
    ];
    (etag, common)
}

fn revalidated(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
}

#[cfg(test)]
mod tests {
    /// build.rs strips each script line's indentation and drops `//` comment lines, which
    /// is safe only while no string or template literal spans lines.
    #[test]
    fn no_script_literal_spans_lines() {
        let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../webui-dist");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dist).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "js") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let at = format!("{}:{}", path.display(), n + 1);
                assert_eq!(
                    line.matches('`').count() % 2,
                    0,
                    "{at}: a template literal spans lines"
                );
                assert!(
                    !line.ends_with('\\'),
                    "{at}: a string continues on the next line"
                );
            }
            checked += 1;
        }
        assert!(
            checked >= 10,
            "only {checked} scripts found in {}",
            dist.display()
        );
    }
}
