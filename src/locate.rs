//! Finds the line that sets a key path in YAML source text.
//!
//! serde_yaml's `Value` forgets positions, so errors found after parsing
//! (unknown keys, wrong types) would otherwise name only the file. This walks
//! block-style YAML by indentation; flow style (`{a: 1}`) or anything unusual
//! simply yields no line, never a wrong one on purpose.

/// The 1-based line of the last key in `key_path`, if it can be found.
pub(crate) fn line_of_key(text: &str, key_path: &[String]) -> Option<usize> {
    let mut search_from = 0;
    let mut parent_indent: Option<usize> = None;
    let lines: Vec<&str> = text.lines().collect();
    let mut found_line = None;
    for key in key_path {
        let mut hit = None;
        for (index, line) in lines.iter().enumerate().skip(search_from) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(parent) = parent_indent
                && indent <= parent
            {
                break; // left the parent's block
            }
            if key_matches(trimmed, key) {
                hit = Some((index, indent));
                break;
            }
        }
        let (index, indent) = hit?;
        found_line = Some(index + 1);
        search_from = index + 1;
        parent_indent = Some(indent);
    }
    found_line
}

/// The line of each key under the top-level key `parent`, in one pass:
/// what `line_of_key(text, [parent, key])` gives for a key without `:` or
/// quotes in it (the first line in `parent`'s block that names it), for
/// every such key at once. hosts.yaml with thousands of hosts would
/// otherwise be scanned once per host.
pub(crate) fn lines_under(text: &str, parent: &str) -> std::collections::HashMap<String, usize> {
    let mut lines = std::collections::HashMap::new();
    let mut parent_indent = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with("---") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        match parent_indent {
            None => {
                if key_matches(trimmed, parent) {
                    parent_indent = Some(indent);
                }
            }
            Some(outer) if indent <= outer => break,
            Some(_) => {
                if let Some(key) = key_named(trimmed) {
                    lines.entry(key.to_string()).or_insert(index + 1);
                }
            }
        }
    }
    lines
}

/// The key a line starts with, plain (`key:`) or quoted (`"key":`).
fn key_named(trimmed: &str) -> Option<&str> {
    for quote in ['"', '\''] {
        if let Some(rest) = trimmed.strip_prefix(quote) {
            let (key, after) = rest.split_once(quote)?;
            return after.starts_with(':').then_some(key);
        }
    }
    trimmed.split_once(':').map(|(key, _)| key)
}

fn key_matches(trimmed: &str, key: &str) -> bool {
    let unquoted = trimmed
        .strip_prefix(key)
        .filter(|rest| rest.starts_with(':'));
    let quoted = |quote: char| {
        trimmed
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_prefix(key))
            .and_then(|rest| rest.strip_prefix(quote))
            .filter(|rest| rest.starts_with(':'))
    };
    unquoted.is_some() || quoted('"').is_some() || quoted('\'').is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_string).collect()
    }

    #[test]
    fn finds_nested_keys_by_indentation() {
        let text = "# comment\na: 1\nb:\n  a: 2\n  c:\n    d: 3\ne: 4\n";
        assert_eq!(line_of_key(text, &path("a")), Some(2));
        assert_eq!(line_of_key(text, &path("b.a")), Some(4));
        assert_eq!(line_of_key(text, &path("b.c.d")), Some(6));
        assert_eq!(line_of_key(text, &path("e")), Some(7));
        assert_eq!(line_of_key(text, &path("b.e")), None);
        assert_eq!(line_of_key(text, &path("missing")), None);
    }

    #[test]
    fn every_key_under_a_parent_in_one_pass_as_one_at_a_time() {
        let text = "# hosts\nhosts:\n  a.example:\n    ssh: x\n  \"b.example\":\n  'c.example': {}\n\n  d.example:\n    groups: [a.example]\nother:\n  e.example: 1\n";
        let lines = lines_under(text, "hosts");
        for name in [
            "a.example",
            "b.example",
            "c.example",
            "d.example",
            "e.example",
            "ssh",
            "groups",
        ] {
            let one = line_of_key(text, &["hosts".to_string(), name.to_string()]);
            assert_eq!(lines.get(name).copied(), one, "{name}");
        }
        assert_eq!(lines.get("a.example"), Some(&3));
        assert_eq!(lines.get("e.example"), None);
    }

    #[test]
    fn understands_quoted_keys() {
        let text = "hosts:\n  \"example.com\":\n    groups: [x]\n";
        assert_eq!(line_of_key(text, &path("hosts.example.com")), None);
        let key = vec!["hosts".to_string(), "example.com".to_string()];
        assert_eq!(line_of_key(text, &key), Some(2));
    }
}
