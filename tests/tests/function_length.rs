//! No function in any crate's sources is over 80 lines (issue 16 item 2): every `src/**/*.rs`
//! of the workspace's crates (not their `tests/` or `benches/`), each `fn` counted from the line
//! of its `fn` keyword to the line of its closing brace. Unit tests in the sources (`#[test]`,
//! `#[tokio::test]`) are tests, not sources: table-driven ones are long by nature.

use std::path::{Path, PathBuf};

/// The longest a function may be, in lines.
const MAX_LINES: usize = 80;

#[test]
fn no_function_is_over_80_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace");
    let mut files = Vec::new();
    for dir in crate_source_dirs(root) {
        rust_files(&dir, &mut files);
    }
    assert!(
        files.len() > 20,
        "found only {} source files under {}",
        files.len(),
        root.display()
    );
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for f in functions(&text) {
            if f.lines > MAX_LINES {
                let shown = file.strip_prefix(root).unwrap_or(file);
                long.push(format!("{}:{}:{}", shown.display(), f.name, f.lines));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines (file:function:lines); split them:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_scanner_counts_functions_and_skips_strings_and_comments() {
    let text = "#[test]\nfn t() {\n\n\n}\nfn a() {\n    let s = \"}\";\n    let c = '}';\n    // }\n}\n\
                trait T { fn decl(&self) -> [u8; 2]; }\n\
                fn b<'x>(v: &'x str) -> &'x str { let r = r#\"{\"#; /* { */ v }\n";
    let found: Vec<(String, usize)> = functions(text)
        .into_iter()
        .map(|f| (f.name, f.lines))
        .collect();
    assert_eq!(found, [("a".to_owned(), 5), ("b".to_owned(), 1)]);
}

/// The `src` directory of every crate (a directory with a `Cargo.toml`) under `root`.
fn crate_source_dirs(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        if dir.join("Cargo.toml").is_file() && dir.join("src").is_dir() {
            found.push(dir.join("src"));
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let skip = matches!(
                name.to_str(),
                Some("target" | "node_modules" | "src" | "tests" | "benches")
            ) || name.to_string_lossy().starts_with('.');
            if path.is_dir() && !skip {
                pending.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A function definition found in a file.
struct Function {
    name: String,
    lines: usize,
}

/// The function definitions (with a body) of `text`, each with its length in lines.
fn functions(text: &str) -> Vec<Function> {
    let code = blank_strings_and_comments(text);
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(at) = next_fn_keyword(&code, i) {
        i = at + 2;
        let Some((name, after_name)) = identifier_after(&code, i) else {
            continue; // `fn(..)` pointer types, `Fn` traits.
        };
        let Some(open) = body_start(&code, after_name) else {
            continue; // A declaration without a body.
        };
        let Some(close) = matching_brace(&code, open) else {
            continue;
        };
        let line_of = |pos: usize| code[..pos].iter().filter(|&&c| c == '\n').count();
        if is_test(text, line_of(at)) {
            continue;
        }
        found.push(Function {
            name,
            lines: line_of(close) - line_of(at) + 1,
        });
    }
    found
}

/// Whether the function on line `fn_line` (0-based) of `text` is a test: a `#[test]` or
/// `#[tokio::test]` among the attributes and doc comments just above it.
fn is_test(text: &str, fn_line: usize) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    lines[..fn_line.min(lines.len())]
        .iter()
        .rev()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with("#[") || l.starts_with("//"))
        .any(|l| l.starts_with("#[test]") || l.starts_with("#[tokio::test"))
}

/// The position of the next `fn` keyword (a whole word) at or after `from`.
fn next_fn_keyword(code: &[char], from: usize) -> Option<usize> {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    (from..code.len().saturating_sub(1)).find(|&i| {
        code[i] == 'f'
            && code[i + 1] == 'n'
            && (i == 0 || !ident(code[i - 1]))
            && code.get(i + 2).is_none_or(|&c| !ident(c))
    })
}

/// The identifier after the whitespace at `from`, and the position after it.
fn identifier_after(code: &[char], from: usize) -> Option<(String, usize)> {
    let start = (from..code.len()).find(|&i| !code[i].is_whitespace())?;
    let end = (start..code.len())
        .find(|&i| !(code[i].is_alphanumeric() || code[i] == '_'))
        .unwrap_or(code.len());
    let name: String = code[start..end].iter().collect();
    let first = name.chars().next()?;
    (first.is_alphabetic() || first == '_').then_some((name, end))
}

/// The body's `{` of the function whose signature starts at `from`; `None` when a `;` ends the
/// signature first. `;` and `{` inside parentheses or brackets (`[u8; 4]`) do not count.
fn body_start(code: &[char], from: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(from) {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            '{' if depth == 0 => return Some(i),
            ';' if depth == 0 => return None,
            _ => {}
        }
    }
    None
}

/// The `}` that closes the `{` at `open`.
fn matching_brace(code: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, &c) in code.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// `text` with the contents of comments, strings and character literals replaced by spaces
/// (newlines kept, so positions and line numbers stay), so braces in them do not count.
fn blank_strings_and_comments(text: &str) -> Vec<char> {
    let src: Vec<char> = text.chars().collect();
    let mut out = src.clone();
    let blank = |out: &mut Vec<char>, from: usize, to: usize| {
        for c in &mut out[from..to.min(src.len())] {
            if *c != '\n' {
                *c = ' ';
            }
        }
    };
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        let next = src.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            let end = (i..src.len())
                .find(|&j| src[j] == '\n')
                .unwrap_or(src.len());
            blank(&mut out, i, end);
            i = end;
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            let mut j = i;
            while j < src.len() {
                if src[j] == '/' && src.get(j + 1) == Some(&'*') {
                    depth += 1;
                    j += 2;
                } else if src[j] == '*' && src.get(j + 1) == Some(&'/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if c == 'r' && (i == 0 || !ident(src[i - 1]) || src[i - 1] == 'b') && {
            let hashes = (i + 1..src.len()).take_while(|&j| src[j] == '#').count();
            src.get(i + 1 + hashes) == Some(&'"')
        } {
            let hashes = (i + 1..src.len()).take_while(|&j| src[j] == '#').count();
            let body = i + 2 + hashes;
            let end = (body..src.len())
                .find(|&j| src[j] == '"' && (1..=hashes).all(|k| src.get(j + k) == Some(&'#')))
                .map_or(src.len(), |j| j + 1 + hashes);
            blank(&mut out, i + 1, end);
            i = end;
        } else if c == '"' {
            let mut j = i + 1;
            while j < src.len() && src[j] != '"' {
                j += if src[j] == '\\' { 2 } else { 1 };
            }
            blank(&mut out, i, j + 1);
            i = j + 1;
        } else if c == '\'' && next == Some('\\') {
            let end = (i + 3..src.len())
                .find(|&j| src[j] == '\'')
                .unwrap_or(src.len());
            blank(&mut out, i, end + 1);
            i = end + 1;
        } else if c == '\'' && src.get(i + 2) == Some(&'\'') {
            blank(&mut out, i, i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}
