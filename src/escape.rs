//! Template filters that write a value as one token of a config format,
//! whatever it holds: it is quoted so that no character of it can end the
//! directive, open a block or start a comment, and a character the format
//! would expand even inside quotes (nginx's `$`, Caddy's `{…}`) is refused
//! with the template's file and line. Line breaks never reach here: the
//! inventory refuses them in every var.

use minijinja::{Error, ErrorKind, Value};

/// `{{ path | nginx }}`: a double-quoted nginx string.
pub(crate) fn nginx(value: Value) -> Result<String, Error> {
    let text = token_text(&value, "nginx")?;
    if text.contains('$') {
        return Err(refused(&text, "nginx", "`$` would be read as a variable"));
    }
    Ok(double_quoted(&text))
}

/// `{{ address | caddy }}`: a double-quoted Caddyfile token.
pub(crate) fn caddy(value: Value) -> Result<String, Error> {
    let text = token_text(&value, "a Caddyfile")?;
    if text.contains(['{', '}']) {
        return Err(refused(
            &text,
            "a Caddyfile",
            "braces would be read as a placeholder or a block",
        ));
    }
    Ok(double_quoted(&text))
}

/// `{{ json | caddy_body }}`: a Caddyfile token in backticks (which leave
/// double quotes alone), for a response body. Caddy reads `{…}` in a
/// body as a placeholder only when it names one it knows, which a JSON
/// object's text never does.
pub(crate) fn caddy_body(value: Value) -> Result<String, Error> {
    let text = token_text(&value, "a Caddyfile")?;
    if text.contains('`') {
        return Err(refused(
            &text,
            "a Caddyfile body",
            "a backtick would end it",
        ));
    }
    Ok(format!("`{text}`"))
}

/// `{{ json | haproxy }}`: a single-quoted HAProxy argument (nothing in
/// it is expanded: no `$VAR`, no escapes).
pub(crate) fn haproxy(value: Value) -> Result<String, Error> {
    let text = token_text(&value, "an HAProxy configuration")?;
    if text.contains('\'') {
        return Err(refused(
            &text,
            "an HAProxy configuration",
            "a single quote cannot be quoted there",
        ));
    }
    Ok(format!("'{text}'"))
}

/// `{{ value | env }}`: the value of a `KEY=value` line of an environment
/// file (systemd's EnvironmentFile, or a shell sourcing it), single-quoted
/// when it holds anything but plain word characters.
pub(crate) fn env(value: Value) -> Result<String, Error> {
    let text = token_text(&value, "an environment file")?;
    if text.contains('\'') {
        return Err(refused(
            &text,
            "an environment file",
            "a single quote cannot be quoted there",
        ));
    }
    Ok(if is_plain_word(&text) {
        text
    } else {
        format!("'{text}'")
    })
}

/// `{{ path | word }}`: one word of a command line (like an argument in an
/// environment variable a unit splits on spaces): only plain word
/// characters, nothing a shell or systemd would split, quote or expand.
pub(crate) fn word(value: Value) -> Result<String, Error> {
    let text = token_text(&value, "a command line")?;
    if is_plain_word(&text) {
        Ok(text)
    } else {
        Err(refused(
            &text,
            "a command line",
            "only letters, digits and -_./:@,+=% may appear in one word there",
        ))
    }
}

/// `{{ name | html_text }}`: text in an HTML page that Synapse renders as
/// a Jinja template of its own: HTML-escaped, and braces written as
/// character references so Synapse never evaluates them.
pub(crate) fn html_text(value: Value) -> Result<String, Error> {
    let text = token_text(&value, "an HTML page")?;
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    Ok(without_template_braces(&escaped))
}

/// `{{ document | html_markup }}`: HTML the operator wrote, kept as HTML,
/// with braces written as character references (they render the same) so
/// Synapse's own Jinja never evaluates them.
pub(crate) fn html_markup(value: Value) -> Result<String, Error> {
    let text = match value.as_str() {
        Some(text) => text.to_string(),
        None => token_text(&value, "an HTML page")?,
    };
    Ok(without_template_braces(&text))
}

fn without_template_braces(text: &str) -> String {
    text.replace('{', "&#123;").replace('}', "&#125;")
}

/// Letters, digits and `-_./:@,+=%` only: nothing a shell, systemd or an
/// environment file would split, quote or expand.
fn is_plain_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@,+=%".contains(c))
}

fn token_text(value: &Value, format: &str) -> Result<String, Error> {
    let text = match value.as_str() {
        Some(text) => text.to_string(),
        None if value.is_number() => value.to_string(),
        None => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "only a string or a number can be written into {format}, not {}",
                    value.kind()
                ),
            ));
        }
    };
    if text.chars().any(char::is_control) {
        return Err(refused(&text, format, "it holds a control character"));
    }
    Ok(text)
}

fn double_quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn refused(text: &str, format: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("`{text}` cannot be written into {format}: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_format_quotes_or_refuses() {
        assert_eq!(
            nginx(Value::from("/a b;c{d}\"e\\")).unwrap(),
            r#""/a b;c{d}\"e\\""#
        );
        assert!(nginx(Value::from("/x$host")).is_err());
        assert_eq!(
            caddy(Value::from("localhost:2019")).unwrap(),
            "\"localhost:2019\""
        );
        assert!(caddy(Value::from("a {b}")).is_err());
        assert_eq!(env(Value::from("bot")).unwrap(), "bot");
        assert_eq!(env(Value::from("a b;$x")).unwrap(), "'a b;$x'");
        assert!(env(Value::from("it's")).is_err());
        assert_eq!(env(Value::from(8008)).unwrap(), "8008");
        assert!(nginx(Value::from("a\nb")).is_err());
        assert_eq!(word(Value::from("/etc/x.yaml")).unwrap(), "/etc/x.yaml");
        assert!(word(Value::from("/etc/a b")).is_err());
        assert_eq!(
            html_text(Value::from("<b>{{ 7*7 }}</b>")).unwrap(),
            "&lt;b&gt;&#123;&#123; 7*7 &#125;&#125;&lt;/b&gt;"
        );
        assert_eq!(
            html_markup(Value::from("<p>{% if x %}</p>")).unwrap(),
            "<p>&#123;% if x %&#125;</p>"
        );
    }
}
