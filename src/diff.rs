//! Unified diffs of file contents, and the small amount of colour plan
//! output uses. Redaction happens on the whole output, in `report`.

use similar::TextDiff;

/// Whether to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub(crate) fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
    pub(crate) fn green(&self, text: &str) -> String {
        self.paint("32", text)
    }
    pub(crate) fn red(&self, text: &str) -> String {
        self.paint("31", text)
    }
    pub(crate) fn yellow(&self, text: &str) -> String {
        self.paint("33", text)
    }
    pub(crate) fn cyan(&self, text: &str) -> String {
        self.paint("36", text)
    }
}

/// A unified diff with 3 lines of context, or `None` when either side is
/// not text (binary files are summarised, never dumped).
pub(crate) fn unified(before: &[u8], after: &[u8]) -> Option<String> {
    let before = std::str::from_utf8(before).ok()?;
    let after = std::str::from_utf8(after).ok()?;
    let diff = TextDiff::from_lines(before, after);
    let mut text = String::new();
    for hunk in diff.unified_diff().context_radius(3).iter_hunks() {
        for line in hunk.to_string().split_inclusive('\n') {
            text.push_str(&elided(line));
        }
    }
    Some(text)
}

/// A diff line longer than this is shown by its start only: a plan is
/// read by people, and an 8 MB value would bury everything else in it.
const LONGEST_LINE: usize = 1000;

/// `line` itself, or its first 200 characters and how long it is (the
/// file's line: without the diff's mark in front and the line break).
fn elided(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= LONGEST_LINE {
        return line.into();
    }
    let start: String = line.chars().take(200).collect();
    let content = line.trim_end_matches('\n').len().saturating_sub(1);
    let end = if line.ends_with('\n') { "\n" } else { "" };
    format!("{start}… (elided: the line is {content} bytes){end}").into()
}

/// Colours a unified diff line by line.
pub(crate) fn paint(diff: &str, style: Style) -> String {
    diff.lines()
        .map(|line| {
            if line.starts_with("@@") {
                style.cyan(line)
            } else if line.starts_with('+') {
                style.green(line)
            } else if line.starts_with('-') {
                style.red(line)
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_have_three_lines_of_context() {
        let before = "1\n2\n3\n4\n5\n6\n7\n8\n";
        let after = "1\n2\n3\n4\nfive\n6\n7\n8\n";
        assert_eq!(
            unified(before.as_bytes(), after.as_bytes()).unwrap(),
            "@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
        );
        assert_eq!(unified(b"\xff", b"x"), None);
    }

    #[test]
    fn a_very_long_line_is_shown_by_its_start() {
        let long = format!("value: {}\n", "x".repeat(8 << 20));
        let diff = unified(b"", long.as_bytes()).unwrap();
        assert!(diff.len() < 400, "{}", diff.len());
        assert!(
            diff.ends_with("… (elided: the line is 8388615 bytes)\n"),
            "{diff}"
        );
        assert!(diff.starts_with("@@ -0,0 +1 @@\n+value: xxx"), "{diff}");
    }
}
