//! The host's top-level modules form no import cycle.
//!
//! A cycle (`auth` uses `tenancy` which uses `auth`) means neither module can be understood,
//! tested or moved without the other; once one exists, more follow. This test reads every
//! file under `src/`, collects the `crate::<module>` paths each top-level module names (in
//! `use` items, in code and inside macro invocations; comments and doc links do not count),
//! and fails with the modules of each cycle and the lines that close it.
//!
//! Run it alone with `cargo test -p posbridge --test module_cycles -- --nocapture`; it also
//! prints the whole dependency graph, one module a line.
//!
//! There is no exception list. `AppState` (in `state`) names the services of most modules,
//! so only the composition root (`api`, `server`) may name it: handlers and extractors take
//! what they need through axum's `FromRef` (a feature's own state such as `HooksState`, or
//! a single handle such as `Store`), feature routers are generic over the router's state,
//! and workers are given their own state. A feature module that names `AppState` again (or
//! `api`, `server` or `config`, which name the features) closes a cycle, and this test says
//! where.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// Where module `from` names module `to`: the first place seen, for the failure message.
type Edges = BTreeMap<String, BTreeMap<String, String>>;

#[test]
fn host_modules_have_no_import_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = dependency_graph(&src);
    for (from, tos) in &edges {
        let names: Vec<&str> = tos.keys().map(String::as_str).collect();
        println!("{from} -> {}", names.join(", "));
    }

    let mut problems = String::new();
    for cycle in &strongly_connected(&edges) {
        problems.push_str(&format!("cycle: {}\n", cycle.join(" <-> ")));
        for from in cycle {
            for (to, place) in &edges[from] {
                if cycle.contains(to) {
                    problems.push_str(&format!("  {from} -> {to} at {place}\n"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "host modules import each other in a cycle:\n{problems}"
    );
}

#[test]
fn the_check_sees_a_cycle_when_there_is_one() {
    let mut edges = Edges::new();
    let mut link = |from: &str, to: &str| {
        edges
            .entry(from.to_owned())
            .or_default()
            .insert(to.to_owned(), format!("{from}.rs"));
    };
    link("auth", "tenancy");
    link("tenancy", "store");
    link("store", "auth");
    link("api", "auth");
    let cycles = strongly_connected(&edges);
    assert_eq!(
        cycles,
        vec![vec![
            "auth".to_owned(),
            "store".to_owned(),
            "tenancy".to_owned()
        ]]
    );

    let file = syn::parse_file(
        "use crate::{store::Store, vault};\n\
         // crate::ignored::InComment\n\
         fn f() { crate::events::publish(); sqlx::query!(crate::money::X); }\n\
         #[cfg(test)] mod tests { use crate::config::ServeConfig; }",
    )
    .expect("test source parses");
    let mut seen = PathCollector::default();
    seen.visit_file(&file);
    let names: BTreeSet<&str> = seen.modules.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["events", "money", "store", "vault"]));
}

/// Reads `src/` and returns, for each top-level module, the modules it names.
fn dependency_graph(src: &Path) -> Edges {
    let mut edges = Edges::new();
    for file in rust_files(src) {
        let relative = file.strip_prefix(src).expect("walked under src");
        let Some(module) = top_level_module(relative) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source file is readable");
        let parsed = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", file.display()));
        let mut seen = PathCollector::default();
        seen.visit_file(&parsed);
        let entry = edges.entry(module.clone()).or_default();
        for (to, line) in seen.modules {
            if to != module {
                entry
                    .entry(to)
                    .or_insert_with(|| format!("{}:{line}", relative.display()));
            }
        }
    }
    edges
}

/// `auth.rs` and `auth/keys.rs` belong to `auth`; the crate roots belong to no module.
fn top_level_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    if relative.components().count() == 1 {
        let stem = first.strip_suffix(".rs")?;
        return (stem != "lib" && stem != "main").then(|| stem.to_owned());
    }
    Some(first.to_owned())
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src directory is readable") {
            let path = entry.expect("directory entry is readable").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Collects the module after `crate::` in every path, with the line it was first seen on.
#[derive(Default)]
struct PathCollector {
    modules: BTreeMap<String, usize>,
}

impl PathCollector {
    fn note(&mut self, module: &proc_macro2::Ident) {
        let line = module.span().start().line;
        self.modules.entry(module.to_string()).or_insert(line);
    }

    /// Macro bodies are token streams to `syn`: look for `crate :: name` in them.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, token) in tokens.iter().enumerate() {
            match token {
                TokenTree::Group(group) => self.scan_tokens(group.stream()),
                TokenTree::Ident(ident) if ident == "crate" => {
                    if let [TokenTree::Punct(a), TokenTree::Punct(b), TokenTree::Ident(next), ..] =
                        &tokens[i + 1..]
                    {
                        if a.as_char() == ':' && b.as_char() == ':' {
                            self.note(next);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn use_tree_after_crate(&mut self, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => self.note(&path.ident),
            syn::UseTree::Name(name) => self.note(&name.ident),
            syn::UseTree::Rename(rename) => self.note(&rename.ident),
            syn::UseTree::Group(group) => {
                for item in &group.items {
                    self.use_tree_after_crate(item);
                }
            }
            syn::UseTree::Glob(_) => {}
        }
    }
}

impl<'ast> Visit<'ast> for PathCollector {
    /// Unit tests may reach across modules (a test in `options` compares with `config`'s
    /// defaults) without tying the modules themselves together: `#[cfg(test)]` items are
    /// left out.
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Const(c) => &c.attrs,
            _ => &[],
        };
        if attrs.iter().any(is_cfg_test) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let mut segments = path.segments.iter();
        if let (Some(first), Some(second)) = (segments.next(), segments.next()) {
            if first.ident == "crate" {
                self.note(&second.ident);
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_use_tree(&mut self, tree: &'ast syn::UseTree) {
        if let syn::UseTree::Path(path) = tree {
            if path.ident == "crate" {
                self.use_tree_after_crate(&path.tree);
                return;
            }
        }
        syn::visit::visit_use_tree(self, tree);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

fn is_cfg_test(attr: &syn::Attribute) -> bool {
    attr.path().is_ident("cfg")
        && attr
            .parse_args::<syn::Meta>()
            .is_ok_and(|meta| meta.path().is_ident("test"))
}

/// Tarjan's algorithm: every strongly connected component of more than one module, each
/// sorted, in sorted order.
fn strongly_connected(edges: &Edges) -> Vec<Vec<String>> {
    struct Walk<'a> {
        edges: &'a Edges,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }

    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            let targets = self.edges.get(node).into_iter().flat_map(|t| t.keys());
            for next in targets {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }

    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in edges.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found.sort();
    walk.found
}
