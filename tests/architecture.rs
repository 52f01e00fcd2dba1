//! The layering of `src/` (ARCHITECTURE.md), checked from the code itself: every `crate::`,
//! `super::` and `self::` path (and a `mod.rs`'s paths into its own children) is an import of the
//! file it names. No two files may import each other in a loop, no file may import from a higher
//! layer, every file says in its first lines what it owns, and no file carries more than
//! `MAX_LINES` lines of production code (its `#[cfg(test)]` module aside).
//!
//! Run alone: `cargo test --test architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The most lines of production code (the file less its `#[cfg(test)]` items) one file may hold.
const MAX_LINES: usize = 600;

/// Each layer with the files and folders it holds (a folder ends in `/`); the longest match wins.
/// A file may import from its own layer (without a loop) and from the layers below, never above.
const LAYERS: &[(&str, &[&str])] = &[
    ("nouns and settings", &["model/", "settings/", "util/", "crypto.rs"]),
    ("adapters", &["gcp/", "db/", "store/", "telemetry.rs", "metrics.rs"]),
    ("pipeline seams", &["discovery/", "queue/", "export/", "notify/"]),
    ("operations", &["runs/", "retention/", "restore/", "verify/", "status/", "copy/", "doctor.rs"]),
    ("entry points", &["app.rs", "nightly.rs", "http/", "cli/", "lib.rs"]),
];

fn layer_of(file: &str) -> Option<(usize, &'static str)> {
    let mut best: Option<(usize, usize, &'static str)> = None;
    for (n, (name, places)) in LAYERS.iter().enumerate() {
        for place in *places {
            let hit = if place.ends_with('/') { file.starts_with(place) } else { file == *place };
            if hit && best.is_none_or(|(len, _, _)| place.len() > len) {
                best = Some((place.len(), n, name));
            }
        }
    }
    best.map(|(_, n, name)| (n, name))
}

/// Module path (`["store", "layout"]`) of each file under `src/` (paths relative to `src/`).
fn modules(src: &Path) -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, src: &Path, out: &mut BTreeMap<Vec<String>, String>) {
        let mut entries: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, src, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap().to_string_lossy().replace('\\', "/");
                if rel == "main.rs" {
                    continue; // the binary: a crate of its own, which imports the library by name
                }
                let mut segs: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
                if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
                    segs.pop();
                }
                out.insert(segs, rel);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, src, &mut out);
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path, // ::
    Punct(char),
}

/// The tokens of a Rust source, comments and literals left out, with the line of each.
fn tokens(text: &str) -> Vec<(Tok, usize)> {
    let b: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && b.get(i + 1) == Some(&'/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && b.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == 'r'
            && (b.get(i + 1) == Some(&'"')
                || (b.get(i + 1) == Some(&'#') && matches!(b.get(i + 2), Some('"') | Some('#'))))
        {
            // raw string r"..." or r#"..."#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '\n' {
                    line += 1;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
        } else if c == '"' || (c == 'b' && b.get(i + 1) == Some(&'"')) {
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                if b.get(j) == Some(&'\n') {
                    line += 1;
                }
                j += 1;
            }
            i = j + 1;
        } else if c == '\'' {
            // a char literal ('x', '\n', '\u{..}') or a lifetime ('a)
            if b.get(i + 1) == Some(&'\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1; // a lifetime: its name follows as an identifier
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(b[start..i].iter().collect()), line));
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((Tok::Punct(c), line));
            i += 1;
        }
    }
    out
}

/// The tokens with every item under `#[cfg(test)]` left out.
fn without_tests(toks: &[(Tok, usize)]) -> Vec<(Tok, usize)> {
    let pattern = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks.len() - i >= pattern.len() && toks[i..i + pattern.len()].iter().map(|t| &t.0).eq(pattern.iter()) {
            // skip the item: up to its `;` at depth 0 or its closing brace
            let mut j = i + pattern.len();
            let mut depth = 0i32;
            while j < toks.len() {
                match toks[j].0 {
                    Tok::Punct('{') => depth += 1,
                    Tok::Punct('}') => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    Tok::Punct(';') if depth == 0 => break,
                    _ => {}
                }
                j += 1;
            }
            i = j + 1;
        } else {
            out.push(toks[i].clone());
            i += 1;
        }
    }
    out
}

/// The first line on which a `#[cfg(test)]` item starts, if any (production lines end there when
/// the test module closes the file).
fn production_lines(text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    match lines.iter().position(|l| l.trim() == "#[cfg(test)]") {
        Some(at) if lines[at..].iter().skip(1).take(1).any(|l| l.trim_start().starts_with("mod ")) => at,
        _ => lines.len(),
    }
}

/// The module paths (from the crate root) that a file's code names.
fn imports(module: &[String], toks: &[(Tok, usize)], children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let ident = |i: usize| match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, t: Tok| toks.get(i).map(|x| &x.0) == Some(&t);
    // inline `mod name {` blocks: (brace depth at which they close, name)
    let mut inline: Vec<(i32, String)> = Vec::new();
    let mut depth = 0i32;
    let mut found = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if inline.last().is_some_and(|(d, _)| *d == depth) {
                    inline.pop();
                }
            }
            Tok::Ident(s) if s == "mod" => {
                if let (Some(name), true) = (ident(i + 1), is(i + 2, Tok::Punct('{'))) {
                    inline.push((depth, name.to_string()));
                }
            }
            _ => {}
        }
        let preceded_by_path = i > 0 && (is(i - 1, Tok::Path) || is(i - 1, Tok::Punct('$')));
        if let Some(first) = ident(i)
            && !preceded_by_path
            && is(i + 1, Tok::Path)
        {
            let here: Vec<String> = module.iter().cloned().chain(inline.iter().map(|(_, n)| n.clone())).collect();
            let base: Option<Vec<String>> = match first {
                "crate" => Some(Vec::new()),
                "self" => Some(here.clone()),
                "super" => {
                    let mut p = here.clone();
                    p.pop();
                    Some(p)
                }
                name if inline.is_empty() && children.contains(name) => {
                    Some(vec![name.to_string()].into_iter().fold(module.to_vec(), |mut m, n| {
                        m.push(n);
                        m
                    }))
                }
                _ => None,
            };
            if let Some(mut base) = base {
                let mut j = i + 2;
                // further super:: segments
                while ident(j) == Some("super") && is(j + 1, Tok::Path) {
                    base.pop();
                    j += 2;
                }
                let (paths, next) = use_tree(toks, j, base);
                found.extend(paths);
                i = next.max(i + 1);
                continue;
            }
        }
        i += 1;
    }
    found
}

/// Reads a path tail (`a::b::C`, `a::{b, c::D}`, `*`) from `at`, prefixed with `base`; returns each
/// full path and the index after it.
fn use_tree(toks: &[(Tok, usize)], mut at: usize, base: Vec<String>) -> (Vec<Vec<String>>, usize) {
    let mut path = base;
    loop {
        match toks.get(at).map(|t| &t.0) {
            Some(Tok::Ident(s)) => {
                path.push(s.clone());
                at += 1;
                if toks.get(at).map(|t| &t.0) == Some(&Tok::Path) {
                    at += 1;
                    continue;
                }
                return (vec![path], at);
            }
            Some(Tok::Punct('{')) => {
                at += 1;
                let mut all = Vec::new();
                loop {
                    match toks.get(at).map(|t| &t.0) {
                        Some(Tok::Punct('}')) | None => return (all, at + 1),
                        Some(Tok::Punct(',')) => at += 1,
                        _ => {
                            let (paths, next) = use_tree(toks, at, path.clone());
                            all.extend(paths);
                            // skip `as name`
                            at = next;
                            if matches!(toks.get(at).map(|t| &t.0), Some(Tok::Ident(s)) if s == "as") {
                                at += 2;
                            }
                        }
                    }
                }
            }
            _ => return (vec![path], at), // `*` or the end
        }
    }
}

/// The file a module path lands in: the deepest module of the path that is a file.
fn resolve<'a>(path: &[String], files: &'a BTreeMap<Vec<String>, String>) -> Option<&'a String> {
    (0..=path.len()).rev().find_map(|n| files.get(&path[..n]))
}

#[test]
fn the_layers_hold() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<usize>>> = BTreeMap::new();
    let mut problems = Vec::new();
    for (module, file) in &files {
        let text = fs::read_to_string(src.join(file)).unwrap();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{file}: does not open with a `//!` line saying what it owns"));
        }
        let lines = production_lines(&text);
        if lines > MAX_LINES {
            problems.push(format!("{file}: {lines} lines of production code, more than {MAX_LINES}"));
        }
        let toks = without_tests(&tokens(&text));
        let children: BTreeSet<String> = files
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .map(|m| m.last().unwrap().clone())
            .collect();
        for path in imports(module, &toks, &children) {
            if let Some(target) = resolve(&path, &files)
                && target != file
                && target != "lib.rs"
            {
                edges.entry(file.clone()).or_default().entry(target.clone()).or_default().insert(0);
            }
        }
        if layer_of(file).is_none() {
            problems.push(format!("{file}: on no layer (add it to LAYERS here and to ARCHITECTURE.md)"));
        }
    }
    // upward imports
    for (from, tos) in &edges {
        for to in tos.keys() {
            if let (Some((lf, nf)), Some((lt, nt))) = (layer_of(from), layer_of(to))
                && lt > lf
            {
                problems.push(format!("{from} ({nf}) imports {to} ({nt}), a higher layer"));
            }
        }
    }
    // cycles: strongly connected components of more than one file (Tarjan)
    for scc in components(&edges) {
        if scc.len() > 1 {
            let set: BTreeSet<&String> = scc.iter().collect();
            let ties: Vec<String> = scc
                .iter()
                .flat_map(|f| {
                    edges
                        .get(f)
                        .into_iter()
                        .flat_map(|t| t.keys())
                        .filter(|t| set.contains(t))
                        .map(move |t| format!("{f} -> {t}"))
                })
                .collect();
            problems.push(format!("import cycle of {} files: {}", scc.len(), ties.join(", ")));
        }
    }
    assert!(problems.is_empty(), "{} layering problems:\n{}", problems.len(), problems.join("\n"));
}

fn components(edges: &BTreeMap<String, BTreeMap<String, BTreeSet<usize>>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeMap<String, BTreeSet<usize>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(tos) = t.edges.get(v) {
            for w in tos.keys() {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(lw));
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(iw));
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            t.out.push(scc);
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: BTreeSet<&str> =
        edges.keys().map(String::as_str).chain(edges.values().flat_map(|t| t.keys().map(String::as_str))).collect();
    for v in nodes {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}
