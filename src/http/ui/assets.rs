//! The dashboard's script, style sheet and icon, embedded in the binary and served under a
//! name that carries a hash of their content, so that browsers may keep them for a year and
//! still never run an old script with a new page.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// An embedded file.
struct Asset {
    /// `app.js`: the name a page asks for (see [`url`]).
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
    /// `app-<hash>.js`.
    served_as: String,
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    [
        (
            "app.js",
            "text/javascript; charset=utf-8",
            include_str!("../../../assets/ui/app.js"),
        ),
        (
            "app.css",
            "text/css; charset=utf-8",
            include_str!("../../../assets/ui/app.css"),
        ),
        (
            "icon.svg",
            "image/svg+xml",
            include_str!("../../../assets/ui/icon.svg"),
        ),
    ]
    .into_iter()
    .map(|(name, content_type, body)| {
        let hash = hex::encode(&Sha256::digest(body.as_bytes())[..6]);
        let (stem, ext) = name.split_once('.').expect("assets have an extension");
        Asset {
            name,
            content_type,
            body,
            served_as: format!("{stem}-{hash}.{ext}"),
        }
    })
    .collect()
});

/// The URL of the embedded file `name` (`app.js`, `app.css`, `icon.svg`).
pub fn url(name: &str) -> String {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .expect("a page names an embedded asset");
    format!("/ui/assets/{}", asset.served_as)
}

/// `GET /ui/assets/{file}`: needs no session (nothing in them is secret).
pub async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.served_as == file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut response = asset.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text on background: 4.5:1 (WCAG AA for normal text).
    const TEXT_PAIRS: &[(&str, &str)] = &[
        ("fg", "bg"),
        ("fg", "surface"),
        ("muted", "bg"),
        ("muted", "surface"),
        ("link", "bg"),
        ("link", "surface"),
        ("primary-fg", "primary-bg"),
        ("danger-fg", "danger-bg"),
        ("ok-fg", "ok-bg"),
        ("err-fg", "err-bg"),
        ("run-fg", "run-bg"),
        ("wait-fg", "wait-bg"),
        ("off-fg", "off-bg"),
        ("code-fg", "code-bg"),
        ("stderr-fg", "code-bg"),
        ("error-fg", "bg"),
        ("error-fg", "surface"),
    ];

    /// Borders of controls and the focus ring on their background: 3:1 (WCAG 1.4.11).
    const UI_PAIRS: &[(&str, &str)] = &[
        ("border-strong", "bg"),
        ("focus", "bg"),
        ("focus", "surface"),
        ("ok-fg", "bg"),
        ("err-fg", "bg"),
    ];

    /// The `--name: #rrggbb;` declarations of the CSS block that starts with `selector {`.
    fn palette(css: &str, selector: &str) -> Vec<(String, [u8; 3])> {
        let start = css.find(&format!("{selector} {{")).expect(selector);
        let block = &css[start..];
        let block = &block[..block.find('}').unwrap()];
        block
            .lines()
            .filter_map(|l| l.trim().strip_prefix("--"))
            .filter_map(|l| l.trim_end_matches(';').split_once(": #"))
            .map(|(name, hex)| {
                let mut rgb = [0u8; 3];
                hex::decode_to_slice(hex, &mut rgb).unwrap();
                (name.to_string(), rgb)
            })
            .collect()
    }

    fn luminance(rgb: [u8; 3]) -> f64 {
        let channel = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2])
    }

    fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn both_palettes_pass_wcag_aa_contrast() {
        let css = include_str!("../../../assets/ui/app.css");
        let light = palette(css, ":root");
        let dark = palette(css, r#":root[data-theme="dark"]"#);
        // The system's dark setting and the chosen dark theme are the same palette.
        assert_eq!(palette(css, r#":root:not([data-theme="light"])"#), dark);
        for (name, colors) in [("light", &light), ("dark", &dark)] {
            let color = |n: &str| {
                colors
                    .iter()
                    .find(|(k, _)| k == n)
                    .unwrap_or_else(|| panic!("--{n}"))
                    .1
            };
            for (pairs, min) in [(TEXT_PAIRS, 4.5), (UI_PAIRS, 3.0)] {
                for (fg, bg) in pairs {
                    let ratio = contrast(color(fg), color(bg));
                    assert!(
                        ratio >= min,
                        "{name}: --{fg} on --{bg} is {ratio:.2}:1, below {min}:1"
                    );
                }
            }
        }
    }

    #[test]
    fn asset_names_carry_their_hash() {
        let js = url("app.js");
        assert!(
            js.starts_with("/ui/assets/app-") && js.ends_with(".js"),
            "{js}"
        );
        assert_eq!(js.len(), "/ui/assets/app-".len() + 12 + ".js".len());
    }
}
