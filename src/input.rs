//! Reading the operator's files without being stalled by them: only
//! regular files (a FIFO would block, /dev/zero would fill memory), of a
//! bounded size, named when a symlink leads out of the inventory, and YAML
//! whose nesting is bounded before the parser sees it (deep nesting is
//! quadratic in serde_yaml before its own recursion limit).

use std::io::Read;
use std::path::Path;

use crate::problem::Problem;

/// The largest file matrixctl reads as YAML: far above any real vars file.
pub(crate) const MAX_YAML_BYTES: u64 = 8 << 20;

/// Flow collections (`[`, `{`) nested deeper than this are refused.
pub(crate) const MAX_FLOW_DEPTH: usize = 64;

/// Reads a file the operator gave as text, at most `limit` bytes. `inside`
/// is the directory it belongs to: a symlink that leads out of it is
/// refused, naming where it points.
pub(crate) fn read_text(path: &Path, inside: Option<&Path>, limit: u64) -> Result<String, Problem> {
    let bytes = read_bytes(path, inside, limit)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Problem::new("the file is not UTF-8 text").in_file(path))?;
    // YAML ends a line at CR LF and at a lone CR (old Mac files) too; so
    // do the line numbers of every message, once the text says `\n` only.
    Ok(if text.contains('\r') {
        text.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        text
    })
}

/// Like [`read_text`], for bytes.
pub(crate) fn read_bytes(
    path: &Path,
    inside: Option<&Path>,
    limit: u64,
) -> Result<Vec<u8>, Problem> {
    let link = std::fs::symlink_metadata(path)
        .map_err(|error| Problem::new(format!("cannot read: {}", reason(&error))).in_file(path))?;
    // The file itself, or a directory on its way (`host_vars/` linked to
    // another inventory's), may lead out.
    if let Some(inside) = inside {
        let target = std::fs::canonicalize(path).map_err(|error| {
            Problem::new(format!("cannot follow the symlink: {}", reason(&error))).in_file(path)
        })?;
        let root = std::fs::canonicalize(inside).unwrap_or_else(|_| inside.to_path_buf());
        if !target.starts_with(&root) {
            let what = if link.file_type().is_symlink() {
                "is a symlink to"
            } else {
                "is, through a linked directory,"
            };
            return Err(Problem::new(format!(
                "{what} {}, outside {}; matrixctl reads only files inside it",
                target.display(),
                inside.display()
            ))
            .in_file(path)
            .with_hint(Some(
                "copy the file into the inventory (or point the link inside it)".to_string(),
            )));
        }
    }
    let metadata = std::fs::metadata(path)
        .map_err(|error| Problem::new(format!("cannot read: {}", reason(&error))).in_file(path))?;
    if !metadata.is_file() {
        return Err(Problem::new(format!(
            "is {}, not a regular file",
            describe_type(&metadata.file_type())
        ))
        .in_file(path));
    }
    if metadata.len() > limit {
        return Err(too_large(path, limit));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|error| Problem::new(format!("cannot read: {}", reason(&error))).in_file(path))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(path, limit));
    }
    Ok(bytes)
}

fn too_large(path: &Path, limit: u64) -> Problem {
    Problem::new(format!(
        "the file is larger than {} KiB; matrixctl does not read it",
        limit >> 10
    ))
    .in_file(path)
}

/// What went wrong reading an operator's file, in words; the message
/// names the file itself (so the module reads with `std::fs`, whose
/// errors do not, where fs_err's would name it twice).
fn reason(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => error.to_string(),
    }
}

fn describe_type(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Parses YAML, refusing first (in one linear pass) flow nesting deeper
/// than [`MAX_FLOW_DEPTH`], with the line where it gets too deep.
pub(crate) fn parse_yaml(path: &Path, text: &str) -> Result<serde_yaml::Value, Problem> {
    if let Some(line) = too_deep_at(text) {
        return Err(Problem::new(format!(
            "YAML nested more than {MAX_FLOW_DEPTH} levels deep"
        ))
        .in_file(path)
        .at_line(Some(line)));
    }
    let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|error| {
        let mut problem = yaml_problem(path, &error);
        // Some parser errors give a byte position, not a line.
        if let Some((message, position)) = problem.message.rsplit_once(" at position ")
            && let Ok(position) = position.trim().parse::<usize>()
        {
            let line = text.as_bytes()[..position.min(text.len())]
                .iter()
                .filter(|&&byte| byte == b'\n')
                .count()
                + 1;
            let control = message.contains("control characters");
            problem.message = message.to_string();
            problem = problem.at_line(Some(line));
            if control {
                problem = problem.with_hint(Some(
                    "this line holds a control character (a NUL byte, say): retype it, or write it with an escape in a double-quoted string"
                        .to_string(),
                ));
            }
        }
        match duplicate_key_line(&problem.message, text, problem.line) {
            Some(line) => problem.at_line(Some(line)),
            None => problem,
        }
    })?;
    if let Some(tag) = first_tag(&value) {
        let line = text
            .lines()
            .position(|line| line.contains(&tag))
            .map(|index| index + 1);
        return Err(Problem::new(format!(
            "the YAML tag `{tag}` is not supported; matrixctl reads plain values"
        ))
        .in_file(path)
        .at_line(line)
        .with_hint(Some(
            "remove the tag (quote the value if it must stay a string)".to_string(),
        )));
    }
    Ok(value)
}

/// The first tag (`!name`) under `value`: serde_yaml keeps the tags it
/// does not resolve itself, and a tag an operator wrote means something to
/// them that matrixctl would silently drop.
fn first_tag(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::Tagged(tagged) => Some(tagged.tag.to_string()),
        serde_yaml::Value::Sequence(items) => items.iter().find_map(first_tag),
        serde_yaml::Value::Mapping(map) => map
            .iter()
            .find_map(|(key, value)| first_tag(key).or_else(|| first_tag(value))),
        _ => None,
    }
}

/// serde_yaml reports a duplicate key at the line of the map holding it:
/// the line of the key's second appearance, at the first one's indent, is
/// the one to point at.
fn duplicate_key_line(message: &str, text: &str, from: Option<usize>) -> Option<usize> {
    let key = message
        .split_once("duplicate entry with key \"")?
        .1
        .split_once('"')?
        .0;
    let is_key = |line: &str| {
        let trimmed = line.trim_start().trim_start_matches("- ");
        [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ]
        .iter()
        .any(|form| trimmed.starts_with(form.as_str()))
    };
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut first: Option<usize> = None;
    for (index, line) in text.lines().enumerate().skip(from.unwrap_or(1) - 1) {
        if !is_key(line) {
            continue;
        }
        match first {
            None => first = Some(indent(line)),
            Some(at) if at == indent(line) => return Some(index + 1),
            Some(_) => {}
        }
    }
    None
}

/// The line where `[` and `{` collections nest too deep, if they do.
/// Quoted scalars and comments are skipped; a bracket inside a plain
/// scalar (`a[1]`) does not open a collection.
fn too_deep_at(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut line = 1;
    let mut previous = b'\n';
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    let mut comment = false;
    for &byte in text.as_bytes() {
        if byte == b'\n' {
            line += 1;
            comment = false;
        }
        if comment {
            continue;
        }
        if let Some(open) = quote {
            match byte {
                b'\\' if open == b'"' && !escaped => escaped = true,
                _ if byte == open && !escaped => quote = None,
                _ => escaped = false,
            }
            previous = byte;
            continue;
        }
        match byte {
            b'"' | b'\'' if starts_value(previous) => quote = Some(byte),
            b'#' if previous.is_ascii_whitespace() => comment = true,
            b'[' | b'{' if starts_value(previous) => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            b']' | b'}' if depth > 0 => depth -= 1,
            _ => {}
        }
        if !byte.is_ascii_whitespace() || byte == b'\n' {
            previous = byte;
        }
    }
    None
}

/// Whether a collection or a quoted scalar may start after this byte.
fn starts_value(previous: u8) -> bool {
    matches!(previous, b'\n' | b':' | b'-' | b',' | b'[' | b'{' | b'?')
}

/// A YAML syntax error, with the parser's line.
pub(crate) fn yaml_problem(
    path: &std::path::Path,
    error: &serde_yaml::Error,
) -> crate::problem::Problem {
    let line = error.location().map(|location| location.line());
    let mut message = error.to_string();
    // serde_yaml appends " at line N column M"; the location line says it.
    if let Some(index) = message.find(" at line ") {
        message.truncate(index);
    }
    let message = crate::problem::without_quoted_values(&message);
    let hint = if message.contains("duplicate entry") {
        Some("a key (and a host) may appear only once in a map; merge the two entries".to_string())
    } else if message.contains("expected an integer") || message.contains("expected a boolean") {
        Some("a `!!int` or `!!bool` tag forces a type the value does not have; remove the tag, or quote the value".to_string())
    } else {
        Some(
            "look at this line and the one before it: the indentation, a missing `:` or closing \
             bracket or quote; quote a value that holds `: ` or ` #`, or starts with one of \
             `{ [ * & ! % @ |` or a backtick"
                .to_string(),
        )
    };
    crate::problem::Problem::new(format!("invalid YAML: {message}"))
        .in_file(path)
        .at_line(line)
        .with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_found_in_linear_time() {
        let deep = format!("x: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        assert_eq!(too_deep_at(&deep), Some(1));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            too_deep_at("a: [1, {b: [2]}]\nc: \"[[[[\"\nd: x[1]\n"),
            None
        );
        let nested = format!("a:\n  b: {}1{}\n", "[".repeat(65), "]".repeat(65));
        assert_eq!(too_deep_at(&nested), Some(2));
        let fine = format!("a: {}1{}\n", "[".repeat(64), "]".repeat(64));
        assert_eq!(too_deep_at(&fine), None);
        // Brackets in comments and in quoted strings do not count.
        let quoted = format!("a: '{}'\n# {}\n", "[".repeat(100), "{".repeat(100));
        assert_eq!(too_deep_at(&quoted), None);
    }
}
