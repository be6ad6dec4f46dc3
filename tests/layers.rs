//! The crate's layers: each module of `src/` names only modules of its own layer or below.
//!
//! Layers, lowest first (also in the crate docs): values; processors, memory spaces,
//! kernels and storage; chunks, task errors and scopes; options and the event log; the scheduler; task
//! handles; the context; lazy thunks, datadeps and other processes (remote); arrays;
//! visualization. The command-line tool (package `dagger-cli` in `cli/`) sits on top and may
//! use anything public.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

const LAYERS: &[&[&str]] = &[
    &["value"],
    &["processor", "kernel", "storage"],
    &["chunk", "error", "scope"],
    &["options", "log"],
    &["sched"],
    &["task"],
    &["context"],
    &["thunk", "datadeps", "mutable", "stream", "remote"],
    &["array"],
    &["viz"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src is readable") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "bin") {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments (line comments, doc comments and block comments),
/// so doc links do not count as imports.
fn strip_comments(src: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(src.len());
    let b = src.as_bytes();
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        if in_str {
            if b[i] == b'\\' {
                out.extend_from_slice(&b[i..(i + 2).min(b.len())]);
                i += 2;
                continue;
            }
            if b[i] == b'"' {
                in_str = false;
            }
            out.push(b[i]);
            i += 1;
        } else if b[i] == b'"' && !b[..i].ends_with(b"'") {
            in_str = true;
            out.push(b'"');
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Which module each name re-exported at the crate root comes from (`pub use module::...`).
fn root_names(lib: &str) -> HashMap<String, String> {
    let mut names = HashMap::new();
    let code = strip_comments(lib);
    for stmt in code.split(';') {
        let Some(pos) = stmt.find("pub use ") else {
            continue;
        };
        let path = stmt[pos + "pub use ".len()..].trim();
        let module = ident_at(path).to_owned();
        if module == "crate" || module == "self" {
            // The prelude repeats names already mapped.
            continue;
        }
        if let Some(open) = path.find('{') {
            for name in path[open + 1..].trim_end_matches('}').split(',') {
                let name = name.trim();
                if !name.is_empty() {
                    names.insert(name.to_owned(), module.clone());
                }
            }
        } else if let Some(last) = path.rsplit("::").next() {
            names.insert(last.trim().to_owned(), module);
        }
    }
    names
}

/// The modules `code` names through `crate::`, with the line they are named on.
fn crate_refs(code: &str, root: &HashMap<String, String>) -> Vec<(String, usize)> {
    let mut refs = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find("crate::") {
            rest = &rest[pos + "crate::".len()..];
            let mut names: Vec<&str> = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c}` on one line; multi-line groups are joined below.
                let inner = group.split('}').next().unwrap_or("");
                names.extend(inner.split(',').map(|s| ident_at(s.trim())));
            } else {
                names.push(ident_at(rest));
            }
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                let module = root.get(name).cloned().unwrap_or_else(|| name.to_owned());
                refs.push((module, n + 1));
            }
        }
    }
    refs
}

#[test]
fn no_module_imports_from_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let root = root_names(&lib);
    assert!(
        root.get("Context").is_some_and(|m| m == "context"),
        "root re-exports are read"
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(
        files.len() > 30,
        "found the crate's sources: {}",
        files.len()
    );
    let mut violations = Vec::new();
    let mut checked = 0;
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src");
        let first = rel.components().next().expect("a path").as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if module == "lib" {
            continue;
        }
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("module `{module}` ({}) has no layer", rel.display()));
        // Join `use crate::{...}` groups that span lines.
        let code = strip_comments(&std::fs::read_to_string(f).expect("readable"));
        let joined = join_groups(&code);
        for (target, line) in crate_refs(&joined, &root) {
            let Some(theirs) = layer_of(&target) else {
                // A root item not from a module (a macro, say) or a crate-root function.
                continue;
            };
            checked += 1;
            if theirs > own {
                violations.push(format!(
                    "{}:{line}: `{module}` (layer {own}) names `{target}` (layer {theirs})",
                    rel.display()
                ));
            }
        }
    }
    assert!(
        checked > 100,
        "the check saw the crate's imports ({checked})"
    );
    assert!(
        violations.is_empty(),
        "imports from a higher layer:\n{}",
        violations.join("\n")
    );
}

/// `use crate::{\n a,\n b\n};` on one line, so groups are read whole. Line numbers after a
/// joined group shift; they only locate violations roughly.
fn join_groups(code: &str) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(code.len());
    let mut depth = 0usize;
    let mut in_crate_group = false;
    let b = code.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if !in_crate_group && b[i..].starts_with(b"crate::{") {
            in_crate_group = true;
            depth = 0;
        }
        if in_crate_group {
            match c {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        in_crate_group = false;
                    }
                }
                b'\n' => {
                    out.push(b' ');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_checker_catches_an_upward_import() {
    let root = root_names("pub use context::{Context, spawn};\npub use array::DArray;");
    let code = join_groups(
        "use crate::{\n    value::Value,\n    Context,\n};\nfn f() { crate::array::x(); }",
    );
    let refs: Vec<String> = crate_refs(&code, &root)
        .into_iter()
        .map(|(m, _)| m)
        .collect();
    assert_eq!(refs, vec!["value", "context", "array"]);
    assert!(layer_of("array") > layer_of("sched"));
    let commented =
        strip_comments("// crate::array\n/// [`x`](crate::array::X)\nlet s = \"crate::viz\";");
    assert!(!commented.contains("crate::array"));
}
