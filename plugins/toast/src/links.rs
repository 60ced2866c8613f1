//! RFC 8288 `Link` headers: `<https://…?page=2>; rel="next", <…>; rel="prev"`.

/// The absolute URL of the `rel="next"` link among every `Link` header in `headers`, resolved
/// against `request_url` when relative.
pub fn next(headers: &[(String, String)], request_url: &str) -> Option<String> {
    headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("link"))
        .flat_map(|(_, value)| parse(value))
        .find(|link| link.rels.iter().any(|rel| rel == "next"))
        .and_then(|link| resolve(request_url, &link.target))
}

/// One link of a `Link` header.
#[derive(Debug, PartialEq, Eq)]
pub struct Link {
    /// The URI reference between `<` and `>`.
    pub target: String,
    /// The `rel` values, lower-cased (`rel="next last"` is two).
    pub rels: Vec<String>,
}

/// Every link of one `Link` header value; malformed parts are skipped.
pub fn parse(value: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        if rest.is_empty() {
            break;
        }
        let Some(after) = rest.strip_prefix('<') else {
            rest = skip_to_comma(rest);
            continue;
        };
        let Some(end) = after.find('>') else {
            break;
        };
        let target = after[..end].trim().to_owned();
        rest = &after[end + 1..];
        let mut rels = Vec::new();
        loop {
            rest = rest.trim_start();
            let Some(param) = rest.strip_prefix(';') else {
                break;
            };
            let param = param.trim_start();
            let name_end = param.find(['=', ';', ',']).unwrap_or(param.len());
            let name = param[..name_end].trim();
            rest = &param[name_end..];
            let mut value = String::new();
            if let Some(v) = rest.strip_prefix('=') {
                let v = v.trim_start();
                if let Some(quoted) = v.strip_prefix('"') {
                    let (text, after_quote) = quoted_string(quoted);
                    value = text;
                    rest = after_quote;
                } else {
                    let end = v.find([';', ',']).unwrap_or(v.len());
                    value = v[..end].trim().to_owned();
                    rest = &v[end..];
                }
            }
            if name.eq_ignore_ascii_case("rel") {
                rels.extend(value.split_whitespace().map(str::to_ascii_lowercase));
            }
        }
        if !rest.is_empty() && !rest.starts_with(',') {
            rest = skip_to_comma(rest);
        }
        links.push(Link { target, rels });
    }
    links
}

/// What follows the next `,` (or nothing).
fn skip_to_comma(text: &str) -> &str {
    match text.find(',') {
        Some(i) => &text[i + 1..],
        None => "",
    }
}

/// The contents of a quoted string whose opening `"` was consumed, with `\` escapes resolved,
/// and the text after its closing `"` (an unterminated string takes the rest).
fn quoted_string(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if escaped {
            value.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            return (value, &text[i + 1..]);
        } else {
            value.push(c);
        }
    }
    (value, "")
}

/// `target` as an absolute URL: as is when absolute, else resolved against `base` (enough of
/// RFC 3986 for the links APIs send: `//host/…`, `/path`, `?query`, `relative/path`).
pub fn resolve(base: &str, target: &str) -> Option<String> {
    if target.is_empty() {
        return None;
    }
    let lower = target.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Some(target.to_owned());
    }
    let scheme_end = base.find("://")?;
    let authority_start = scheme_end + 3;
    let path_start = base[authority_start..]
        .find(['/', '?', '#'])
        .map_or(base.len(), |i| authority_start + i);
    let origin = &base[..path_start];
    if target.starts_with("//") {
        return Some(format!("{}:{target}", &base[..scheme_end]));
    }
    if target.starts_with('/') {
        return Some(format!("{origin}{target}"));
    }
    let without_query = &base[..base[path_start..]
        .find(['?', '#'])
        .map_or(base.len(), |i| path_start + i)];
    if target.starts_with('?') {
        return Some(format!("{without_query}{target}"));
    }
    // A relative path: replace the last segment of the base path.
    let dir_end = without_query[path_start..]
        .rfind('/')
        .map_or(path_start, |i| path_start + i);
    Some(format!("{}/{target}", &without_query[..dir_end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|v| ("Link".to_owned(), v.to_string()))
            .collect()
    }

    const BASE: &str = "https://ws-api.toasttab.com/orders/v2/ordersBulk?startDate=a&page=1";

    #[test]
    fn finds_next_among_several_links() {
        let value = r#"<https://ws-api.toasttab.com/orders/v2/ordersBulk?startDate=a&page=0>; rel="prev", <https://ws-api.toasttab.com/orders/v2/ordersBulk?startDate=a&page=2>; rel="next""#;
        assert_eq!(
            next(&headers(&[value]), BASE).as_deref(),
            Some("https://ws-api.toasttab.com/orders/v2/ordersBulk?startDate=a&page=2")
        );
        assert_eq!(
            parse(value).into_iter().map(|l| l.rels).collect::<Vec<_>>(),
            vec![vec!["prev".to_owned()], vec!["next".to_owned()]]
        );
    }

    #[test]
    fn rel_forms() {
        for value in [
            "<https://h/p?page=2>; rel=next",
            "<https://h/p?page=2>;rel=\"next\"",
            "<https://h/p?page=2> ; REL = \"Next\"",
            "<https://h/p?page=2>; rel=\"last next\"",
            "<https://h/p?page=2>; title=\"a, b; rel=prev\"; rel=\"next\"",
            "<https://h/p?page=2>; rel=\"n\\ext\"",
        ] {
            assert_eq!(
                next(&headers(&[value]), BASE).as_deref(),
                Some("https://h/p?page=2"),
                "{value}"
            );
        }
        for value in [
            "<https://h/p?page=2>; rel=\"prev\"",
            "<https://h/p?page=2>; rel=\"nextpage\"",
            "<https://h/p?page=2>; title=\"rel=next\"",
            "<https://h/p?page=2>",
            "https://h/p?page=2; rel=next",
            "<https://h/p?page=2; rel=next",
            "",
            ",,,",
            "<>; rel=next",
        ] {
            assert_eq!(next(&headers(&[value]), BASE), None, "{value}");
        }
    }

    #[test]
    fn commas_and_semicolons_inside_the_url() {
        let value = "<https://h/p?a=1,2;3&page=2>; rel=\"next\", <https://h/p?page=9>; rel=last";
        assert_eq!(
            next(&headers(&[value]), BASE).as_deref(),
            Some("https://h/p?a=1,2;3&page=2")
        );
    }

    #[test]
    fn several_link_headers_and_garbage() {
        let hs = headers(&[
            "garbage, <https://h/first>; rel=prev",
            "<https://h/second>; rel=next",
        ]);
        assert_eq!(next(&hs, BASE).as_deref(), Some("https://h/second"));
        let mut hs = hs;
        hs.insert(0, ("Content-Type".into(), "<https://h/x>; rel=next".into()));
        assert_eq!(next(&hs, BASE).as_deref(), Some("https://h/second"));
        // Garbage after a link's parameters does not hide the next link.
        let value = "<https://h/a>; rel=prev junk junk, <https://h/b>; rel=next";
        assert_eq!(
            next(&headers(&[value]), BASE).as_deref(),
            Some("https://h/b")
        );
    }

    #[test]
    fn relative_links_resolve_against_the_request() {
        let r = |t| resolve(BASE, t);
        assert_eq!(
            r("/orders/v2/ordersBulk?page=2").as_deref(),
            Some("https://ws-api.toasttab.com/orders/v2/ordersBulk?page=2")
        );
        assert_eq!(
            r("?page=2").as_deref(),
            Some("https://ws-api.toasttab.com/orders/v2/ordersBulk?page=2")
        );
        assert_eq!(
            r("ordersBulk?page=2").as_deref(),
            Some("https://ws-api.toasttab.com/orders/v2/ordersBulk?page=2")
        );
        assert_eq!(
            r("//other.example/x").as_deref(),
            Some("https://other.example/x")
        );
        assert_eq!(
            resolve("http://127.0.0.1:8081", "/o?page=2").as_deref(),
            Some("http://127.0.0.1:8081/o?page=2")
        );
        assert_eq!(r("HTTPS://H/x").as_deref(), Some("HTTPS://H/x"));
        assert_eq!(r(""), None);
        assert_eq!(resolve("not a url", "/x"), None);
    }
}
