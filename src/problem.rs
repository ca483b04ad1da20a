//! Errors a user can cause and fix: what is wrong, where (file, line, key
//! path) and what to do. Every bad input ends up here, never in a panic.

use std::fmt;
use std::path::{Path, PathBuf};

/// One thing wrong with the user's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    /// A longer excerpt shown indented under the location (a template excerpt).
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            file: None,
            line: None,
            key: None,
            detail: None,
            hint: None,
        }
    }

    pub fn in_file(mut self, file: &Path) -> Problem {
        self.file = Some(file.to_path_buf());
        self
    }

    pub fn at_line(mut self, line: Option<usize>) -> Problem {
        self.line = line;
        self
    }

    pub fn at_key(mut self, key: impl Into<String>) -> Problem {
        let key = key.into();
        self.key = (!key.is_empty()).then_some(key);
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Problem {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Problem {
        self.hint = hint;
        self
    }
}

/// A YAML parser message without the scalars it quotes (`string "…"`):
/// at parse time nothing yet says which values are secrets, and the file
/// and line already point at the value.
pub(crate) fn without_quoted_values(message: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(QUOTED) {
        out.push_str(&rest[..start]);
        out.push_str("a string");
        let body = &rest[start + QUOTED.len()..];
        // The closing quote is the first one not escaped by a backslash.
        let mut escaped = false;
        let mut end = body.len();
        for (index, c) in body.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = index + 1;
                    break;
                }
                _ => escaped = false,
            }
        }
        rest = &body[end.min(body.len())..];
    }
    out.push_str(rest);
    out
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        let location = match (&self.file, self.line) {
            (Some(file), Some(line)) => Some(format!("{}:{line}", file.display())),
            (Some(file), None) => Some(file.display().to_string()),
            (None, _) => None,
        };
        match (location, &self.key) {
            (Some(location), Some(key)) => write!(f, "\n  --> {location}, key `{key}`")?,
            (Some(location), None) => write!(f, "\n  --> {location}")?,
            (None, Some(key)) => write!(f, "\n  --> key `{key}`")?,
            (None, None) => {}
        }
        if let Some(detail) = &self.detail {
            for line in detail.trim_end().lines() {
                write!(f, "\n   | {line}")?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// Every problem found in one pass over the input, so the operator fixes them
/// all at once instead of one per run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{problem}")?;
        }
        match self.0.len() {
            1 => write!(f, "1 problem found; no host was touched."),
            n => write!(f, "{n} problems found; no host was touched."),
        }
    }
}

impl std::error::Error for Problems {}

impl From<Problem> for Problems {
    fn from(problem: Problem) -> Problems {
        Problems(vec![problem])
    }
}

/// The closest candidate to a misspelt word, if one is close enough to be a
/// plausible typo.
pub(crate) fn did_you_mean<'a, I>(input: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(input, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, candidate)| format!("did you mean `{candidate}`?"))
}

/// serde reports enum typos as "unknown variant `x`, expected one of `a`, `b`"
/// and field typos alike; pull out the word and the choices so we can suggest.
pub(crate) fn suggestion_for_serde_message(message: &str) -> Option<String> {
    let rest = ["unknown variant `", "unknown value `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))?;
    let (input, rest) = rest.split_once('`')?;
    let choices: Vec<&str> = rest
        .split('`')
        .enumerate()
        .filter(|(index, _)| index % 2 == 1)
        .map(|(_, choice)| choice)
        .collect();
    did_you_mean(input, choices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_messages_lose_their_quoted_values() {
        assert_eq!(
            without_quoted_values(r#"k: invalid value: string "s3cr\"et", expected an integer"#),
            "k: invalid value: a string, expected an integer"
        );
        assert_eq!(without_quoted_values("no value here"), "no value here");
        assert_eq!(without_quoted_values(r#"string "unterminated"#), "a string");
    }

    #[test]
    fn suggests_close_words_only() {
        assert_eq!(
            did_you_mean("registraton", ["registration", "federation_port"]),
            Some("did you mean `registration`?".to_string())
        );
        assert_eq!(did_you_mean("zzz", ["registration"]), None);
    }

    #[test]
    fn reads_serde_enum_messages() {
        let message = "unknown variant `tokn`, expected `token` or `closed`";
        assert_eq!(
            suggestion_for_serde_message(message),
            Some("did you mean `token`?".to_string())
        );
    }
}

/// A type error found while deserializing checked input, with the key path
/// that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TypeError {
    /// The leading map keys of the path: what a line lookup can follow.
    pub keys: Vec<String>,
    /// The whole path for people, like `files[0].mode`; empty at the top.
    pub display: String,
    pub message: String,
}

/// Deserializes `value`, reporting where in it a type error happened.
pub(crate) fn deserialize_at<T: serde::de::DeserializeOwned>(
    value: serde_yaml::Value,
) -> Result<T, TypeError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        use serde_path_to_error::Segment;
        let mut keys = Vec::new();
        let mut display = String::new();
        let mut followable = true;
        for segment in error.path().iter() {
            match segment {
                Segment::Map { key } => {
                    if followable {
                        keys.push(key.clone());
                    }
                    if !display.is_empty() {
                        display.push('.');
                    }
                    display.push_str(key);
                }
                Segment::Seq { index } => {
                    followable = false;
                    display.push_str(&format!("[{index}]"));
                }
                // An enum-typed map key: serde cannot tell us which; stop here.
                Segment::Enum { .. } | Segment::Unknown => break,
            }
        }
        // serde says "variant" for what an operator calls a value.
        let message = error.into_inner().to_string();
        let message = match (
            message.strip_prefix("unknown variant"),
            message.strip_prefix("missing field "),
        ) {
            (Some(rest), _) => format!("unknown value{rest}"),
            (_, Some(field)) => format!("{field} is required here"),
            _ => message,
        };
        TypeError {
            keys,
            display,
            message,
        }
    })
}
