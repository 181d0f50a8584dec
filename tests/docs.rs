//! The README is a front page, and the documentation it leads to holds together: every
//! relative link points at a file that exists, and every `#anchor` at a heading in it.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A front page fits on a few screens; everything else lives in docs/.
const MAX_README_BYTES: u64 = 15_000;

#[test]
fn the_readme_is_a_front_page() {
    let size = std::fs::metadata(Path::new(ROOT).join("README.md"))
        .expect("README.md")
        .len();
    assert!(
        size <= MAX_README_BYTES,
        "README.md is {size} bytes; move detail into docs/"
    );
}

#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let mut pages = vec![Path::new(ROOT).join("README.md")];
    for entry in std::fs::read_dir(Path::new(ROOT).join("docs")).expect("docs/") {
        let path = entry.expect("docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("read page");
        for link in links(&text) {
            checked += 1;
            if let Err(why) = resolve(page, &link) {
                broken.push(format!("{}: {link}: {why}", page.display()));
            }
        }
    }
    assert!(checked > 40, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The targets of Markdown links `[text](target)` outside code blocks, but web addresses.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        for (i, _) in line.match_indices("](") {
            let rest = &line[i + 2..];
            if let Some(end) = rest.find(')') {
                let target = &rest[..end];
                if !target.starts_with("http") && !target.contains(' ') {
                    out.push(target.to_string());
                }
            }
        }
    }
    out
}

fn resolve(page: &Path, link: &str) -> Result<(), String> {
    let (path, anchor) = link.split_once('#').unwrap_or((link, ""));
    let target: PathBuf = if path.is_empty() {
        page.to_path_buf()
    } else {
        page.parent().expect("page folder").join(path)
    };
    if !target.exists() {
        return Err("no such file".into());
    }
    if anchor.is_empty() || target.extension().is_none_or(|e| e != "md") {
        return Ok(());
    }
    let text = std::fs::read_to_string(&target).expect("read target");
    let found = text
        .lines()
        .filter(|l| l.starts_with('#'))
        .any(|heading| slug(heading) == anchor);
    if found {
        Ok(())
    } else {
        Err(format!("no heading for #{anchor}"))
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as dashes.
fn slug(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn anchors_are_read_as_github_writes_them() {
    assert_eq!(
        slug("## Day two: observe, import, drift, JWTs"),
        "day-two-observe-import-drift-jwts"
    );
    assert_eq!(
        links("see [a](docs/a.md#b) and [web](https://x.y)\n```\n[c](d)\n```\n"),
        ["docs/a.md#b"]
    );
}
