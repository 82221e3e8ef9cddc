//! Gzips the prebuilt web UI (`../webui-dist`) into `$OUT_DIR/webui`, which `http/ui.rs`
//! embeds: the binary carries each file compressed (about a third of its size) and the
//! daemon sends those bytes as they are to every browser (`Content-Encoding: gzip`). Files
//! already named `*.gz` (large vendored code) are copied unchanged. Scripts and style
//! sheets lose their indentation, blank lines and whole-line comments first: 5 KB
//! of the router builds' 5,000,000 bytes. That is safe because no script holds a string
//! or template literal spanning lines (a test in `http/ui.rs` keeps it so).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

fn main() {
    // Read when the script runs, not compiled in: cargo reuses a built script for another
    // checkout with the same target directory (its fingerprint leaves the path out), and a
    // compiled-in path would embed that other checkout's UI, or none once it is gone.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let source = Path::new(&manifest_dir).join("../webui-dist");
    // The router builds leave the vendored QR decoder out (the `router-size` feature).
    let skip_vendor = std::env::var_os("CARGO_FEATURE_ROUTER_SIZE").is_some();
    println!("cargo:rerun-if-changed={}", source.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("webui");
    if out.exists() {
        fs::remove_dir_all(&out).expect("clear the previous gzipped UI");
    }
    gzip_tree(&source, &out);
    if skip_vendor {
        fs::remove_dir_all(out.join("vendor")).expect("leave the vendored code out");
    }
}

fn gzip_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the gzipped UI directory");
    let mut entries: Vec<_> = fs::read_dir(from)
        .expect("read webui-dist")
        .map(|e| e.expect("read a webui-dist entry").path())
        .collect();
    entries.sort();
    for path in entries {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path
            .file_name()
            .expect("an entry has a name")
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            gzip_tree(&path, &to.join(&name));
        } else if name.ends_with(".gz") {
            fs::copy(&path, to.join(&name)).expect("copy a gzipped UI file");
        } else {
            let mut data = fs::read(&path).expect("read a UI file");
            if name.ends_with(".js") || name.ends_with(".css") {
                data = compact(&data, name.ends_with(".js"));
            }
            // No file name and a zero mtime in the header: the same UI gives the same bytes.
            let mut encoder = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::best());
            encoder.write_all(&data).expect("gzip a UI file");
            let gzipped = encoder.finish().expect("gzip a UI file");
            fs::write(to.join(format!("{name}.gz")), gzipped).expect("write a gzipped UI file");
        }
    }
}

/// `source` without blank lines, leading whitespace, and lines that are only a comment
/// (`//` in scripts, a one-line `/* */` in style sheets). Not a minifier: nothing inside
/// a line changes.
fn compact(source: &[u8], script: bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(source);
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let line = line.trim_start();
        let comment = if script {
            line.starts_with("//")
        } else {
            line.starts_with("/*") && line.ends_with("*/")
        };
        if line.is_empty() || comment {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}
