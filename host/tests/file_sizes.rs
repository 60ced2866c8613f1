//! Files in `host/src` stay small enough to read in one sitting: one over [`LIMIT`] lines
//! must say why at its top, in a paragraph of its module docs that starts with `Size:`
//! (what keeps it together, or where it splits next). Run it alone with
//! `cargo nextest run --workspace -E 'test(/long_files_say_why/)'`.

use std::path::{Path, PathBuf};

/// Lines past which a file needs its reason written down: the rule is "about 600", with
/// 50 lines of slack so that one added function does not call for an essay.
const LIMIT: usize = 650;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn long_files_say_why_at_their_top() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} files", files.len());
    let mut unexplained = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("reading a source file");
        let lines = text.lines().count();
        if lines <= LIMIT {
            continue;
        }
        let says_why = text.lines().take_while(|l| l.starts_with("//!")).any(|l| {
            l.trim_start_matches("//!")
                .trim_start()
                .starts_with("Size:")
        });
        if !says_why {
            unexplained.push(format!(
                "{} ({lines} lines)",
                path.strip_prefix(&src).unwrap_or(&path).display()
            ));
        }
    }
    assert!(
        unexplained.is_empty(),
        "over {LIMIT} lines with no `//! Size:` paragraph saying why: {unexplained:#?}"
    );
}
