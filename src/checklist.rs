//! The customer's checklist (`matrixctl onboard`): what has to happen off
//! the host for it to work, from the roles' `checklist` entries and the
//! ports the roles open (the same list the firewall is built from).
//! Printed as text, as Markdown to send the customer, or as JSON.

use std::fmt::Write;

use serde::Serialize;

use crate::roles::OpenPort;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Checklist {
    pub host: String,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Section {
    pub title: String,
    pub entries: Vec<Entry>,
}

/// One role's part of a section.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Entry {
    #[serde(skip)]
    pub section: String,
    #[serde(skip)]
    pub order: u32,
    pub role: String,
    pub text: String,
    pub records: Vec<Record>,
    pub ports: Vec<Port>,
    pub served: Vec<Served>,
    pub snippets: Vec<Snippet>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Record {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Port {
    /// `443` or `49152-49172`.
    pub port: String,
    pub proto: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Served {
    pub url: String,
    /// The URL's path, as web server configurations match it.
    pub location: String,
    /// Where this host keeps its own copy.
    pub path: String,
    pub content: String,
    /// The content on one line (JSON re-serialised compactly).
    pub json: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snippet {
    pub label: String,
    pub text: String,
}

/// Where the ports go among the roles' sections.
const PORTS_ORDER: u32 = 20;
const PORTS_SECTION: &str = "Firewall ports";

impl Checklist {
    /// Sections by order then title; within one, the roles' entries in
    /// role order.
    pub(crate) fn new(
        host: &str,
        mut entries: Vec<Entry>,
        ports: &[OpenPort],
        ssh_port: Option<u16>,
    ) -> Checklist {
        let mut open: Vec<Port> = Vec::new();
        if let Some(ssh) = ssh_port {
            open.push(Port {
                port: ssh.to_string(),
                proto: "tcp".into(),
                description: "SSH (matrixctl reaches the host through it)".into(),
            });
        }
        let mut ports = ports.to_vec();
        ports.sort_by_key(|port| (port.start, port.end, port.proto));
        open.extend(ports.iter().map(|port| Port {
            port: port.port.clone(),
            proto: match port.proto {
                crate::roles::Proto::Tcp => "tcp".into(),
                crate::roles::Proto::Udp => "udp".into(),
            },
            description: port.description.clone(),
        }));
        entries.push(Entry {
            section: PORTS_SECTION.into(),
            order: PORTS_ORDER,
            role: "firewall".into(),
            text:
                "If the provider filters traffic in front of the server (a security group, a cloud \
firewall), it must let these in from anywhere; everything else may stay closed."
                    .into(),
            ports: open,
            ..Entry::default()
        });
        // Stable: entries keep role order within a section.
        entries.sort_by(|a, b| (a.order, &a.section).cmp(&(b.order, &b.section)));
        let mut sections: Vec<Section> = Vec::new();
        for entry in entries {
            match sections.last_mut() {
                Some(section) if section.title == entry.section => section.entries.push(entry),
                _ => sections.push(Section {
                    title: entry.section.clone(),
                    entries: vec![entry],
                }),
            }
        }
        Checklist {
            host: host.to_string(),
            sections,
        }
    }

    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Checklist for {}", self.host);
        for section in &self.sections {
            let _ = writeln!(out, "\n== {} ==", section.title);
            for entry in &section.entries {
                if !entry.text.is_empty() {
                    out.push('\n');
                    for line in wrap(&entry.text, 76) {
                        let _ = writeln!(out, "  {line}");
                    }
                }
                if !entry.records.is_empty() {
                    out.push('\n');
                    let name_width = width(entry.records.iter().map(|r| r.name.len() + 1));
                    let kind_width = width(entry.records.iter().map(|r| r.kind.len()));
                    for record in &entry.records {
                        let name = format!("{}.", record.name);
                        let _ = writeln!(
                            out,
                            "  {name:name_width$}  {:kind_width$}  {}",
                            record.kind, record.value
                        );
                    }
                }
                if !entry.ports.is_empty() {
                    out.push('\n');
                    let port_width = width(entry.ports.iter().map(|p| p.port.len() + 4));
                    for port in &entry.ports {
                        let port_name = format!("{}/{}", port.port, port.proto);
                        let _ = writeln!(out, "  {port_name:port_width$}  {}", port.description);
                    }
                }
                for served in &entry.served {
                    let _ = writeln!(out, "\n  {}", served.url);
                    for line in served.content.lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                }
                for snippet in &entry.snippets {
                    let _ = writeln!(out, "\n  {}:", snippet.label);
                    for line in snippet.text.lines() {
                        let _ = writeln!(out, "    {line}");
                    }
                }
            }
        }
        // No trailing spaces from indenting empty lines.
        out.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    pub(crate) fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Matrix for {}: what to set up", self.host);
        for section in &self.sections {
            let _ = writeln!(out, "\n## {}", section.title);
            for entry in &section.entries {
                if !entry.text.is_empty() {
                    let _ = writeln!(out, "\n{}", entry.text);
                }
                if !entry.records.is_empty() {
                    out.push_str("\n| name | type | value |\n|---|---|---|\n");
                    for record in &entry.records {
                        let _ = writeln!(
                            out,
                            "| `{}.` | {} | {} |",
                            record.name, record.kind, record.value
                        );
                    }
                }
                if !entry.ports.is_empty() {
                    out.push_str("\n| port | protocol | for |\n|---|---|---|\n");
                    for port in &entry.ports {
                        let _ = writeln!(
                            out,
                            "| {} | {} | {} |",
                            port.port, port.proto, port.description
                        );
                    }
                }
                for served in &entry.served {
                    let _ = write!(out, "\n`{}`:\n\n```json\n{}", served.url, served.content);
                    if !served.content.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str("```\n");
                }
                for snippet in &entry.snippets {
                    let _ = write!(out, "\n{}:\n\n```\n{}```\n", snippet.label, snippet.text);
                }
            }
        }
        out
    }
}

fn width(lengths: impl Iterator<Item = usize>) -> usize {
    lengths.max().unwrap_or(0)
}

/// Words of `text` in lines of at most `columns` (a longer word gets a
/// line of its own).
fn wrap(text: &str, columns: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split("\n\n") {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > columns {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines.push(String::new());
    }
    lines.pop();
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_words_and_keeps_paragraphs() {
        assert_eq!(
            wrap("one two three\n\nfour", 7),
            vec!["one two", "three", "", "four"]
        );
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            vec!["averyveryverylongword", "x"]
        );
    }
}
