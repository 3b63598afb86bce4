//! Each setting is declared once (`floe_core::settings`); these tests keep
//! what is derived from the declaration outside the code in agreement with it:
//! README's configuration table, and the code that reads each setting.

use std::path::{Path, PathBuf};

use floe_core::settings::{SETTINGS, markdown_table};

const BEGIN: &str = "<!-- settings: begin -->";
const END: &str = "<!-- settings: end -->";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// README's table is exactly the one rendered from the declarations.
/// `FLOE_BLESS=1 cargo test -p floe-core --test settings` rewrites it.
#[test]
fn readme_table_is_rendered_from_the_declarations() {
    let path = workspace().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (Some(b), Some(e)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md lacks the {BEGIN} ... {END} markers around the settings table");
    };
    let current = &readme[b + BEGIN.len()..e];
    let expected = format!("\n{}", markdown_table());
    if current == expected {
        return;
    }
    if std::env::var("FLOE_BLESS").is_ok_and(|v| v == "1") {
        let updated = format!("{}{expected}{}", &readme[..b + BEGIN.len()], &readme[e..]);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    panic!(
        "README's settings table differs from the declarations in core/src/settings.rs; \
         run `FLOE_BLESS=1 cargo test -p floe-core --test settings` to render it. Expected:\n{expected}"
    );
}

/// Rust sources of the crates that make up the `floe` binary.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A declared setting nothing reads is a promise the code does not keep
/// (`retry_budget` once was): every setting is read as `settings.<name>`
/// somewhere outside its declaration.
#[test]
fn every_declared_setting_is_read_by_the_code() {
    let root = workspace();
    let mut files = Vec::new();
    for krate in ["core/src", "flusher/src", "gateway/src", "compactor/src"] {
        sources(&root.join(krate), &mut files);
    }
    let code: String = files
        .iter()
        .filter(|f| !f.ends_with("core/src/settings.rs"))
        .map(|f| std::fs::read_to_string(f).expect("read source"))
        .flat_map(|text| {
            // Code only: a mention in a comment reads nothing.
            text.lines()
                .map(|l| l.split_once("//").map_or(l, |(code, _)| code).to_string())
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n");
    // Whitespace removed: a read may be split over lines by rustfmt.
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let unread: Vec<&str> = SETTINGS
        .iter()
        .map(|d| d.name)
        .filter(|name| {
            let needle = format!("settings.{name}");
            !code.match_indices(&needle).any(|(i, _)| {
                code[i + needle.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
            })
        })
        .collect();
    assert!(unread.is_empty(), "declared but never read: {unread:?}");
}
