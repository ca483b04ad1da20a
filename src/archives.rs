//! `matrixctl backups HOST`: a host's archives as a table, from what its
//! backup script's `list` prints: the host's clock (`now EPOCH`), then
//! BorgBackup's `info --json` of the host's archives.

use anyhow::{Context, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct Info {
    archives: Vec<Archive>,
}

#[derive(Deserialize)]
struct Archive {
    name: String,
    stats: Stats,
}

#[derive(Deserialize)]
struct Stats {
    original_size: u64,
    deduplicated_size: u64,
    nfiles: u64,
}

/// The table: one archive per line, oldest first (as the repository
/// lists them), with its age against the host's clock, its size, how many
/// files it holds and what it alone holds (what pruning it would free).
pub(crate) fn table(said: &str) -> Result<String> {
    let (clock, json) = said.split_once('\n').unwrap_or((said, ""));
    let now: i64 = clock
        .strip_prefix("now ")
        .and_then(|seconds| seconds.trim().parse().ok())
        .with_context(|| format!("the host's backup script did not say its time: {clock:.80}"))?;
    let info: Info = serde_json::from_str(json)
        .context("the host's backup script did not list its archives as JSON")?;
    if info.archives.is_empty() {
        return Ok("No archive of this host yet.\n".to_string());
    }
    let rows: Vec<[String; 5]> = info
        .archives
        .iter()
        .map(|archive| {
            let age = made_at(&archive.name)
                .map_or("?".to_string(), |made| age_text(now.saturating_sub(made)));
            [
                archive.name.clone(),
                age,
                size_text(archive.stats.original_size),
                archive.stats.nfiles.to_string(),
                size_text(archive.stats.deduplicated_size),
            ]
        })
        .collect();
    let header = ["ARCHIVE", "AGE", "SIZE", "FILES", "ITS OWN"].map(str::to_string);
    let mut widths = [0; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let [name, age, size, files, own] = row;
        out.push_str(&format!(
            "{name:<w0$}  {age:<w1$}  {size:>w2$}  {files:>w3$}  {own:>w4$}\n",
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        ));
    }
    Ok(out)
}

/// When an archive was made, from the UTC time its name ends with
/// (`example.org-2026-12-06T03:12:44Z`), in seconds since the epoch.
fn made_at(name: &str) -> Option<i64> {
    let stamp = name.get(name.len().checked_sub(20)?..)?;
    let number = |range: std::ops::Range<usize>| stamp.get(range)?.parse::<i64>().ok();
    let shape_ok = stamp
        .as_bytes()
        .iter()
        .enumerate()
        .all(|(index, byte)| match index {
            4 | 7 => *byte == b'-',
            10 => *byte == b'T',
            13 | 16 => *byte == b':',
            19 => *byte == b'Z',
            _ => byte.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let seconds = number(11..13)? * 3600 + number(14..16)? * 60 + number(17..19)?;
    Some(crate::calendar::days_from_civil(year, month, day) * 86_400 + seconds)
}

/// `3 minutes`, `5 hours`, `2 days`: the largest unit that gives at
/// least 2 of it.
fn age_text(seconds: i64) -> String {
    if seconds < 120 {
        "just now".to_string()
    } else if seconds < 7200 {
        format!("{} minutes", seconds / 60)
    } else if seconds < 172_800 {
        format!("{} hours", seconds / 3600)
    } else {
        format!("{} days", seconds / 86_400)
    }
}

/// Bytes in the decimal units BorgBackup prints (`1.23 GB`).
fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archives_are_listed_with_their_age_size_and_own_share() {
        let said = r#"now 1796526764
{"archives": [
  {"name": "example.org-2026-12-04T03:12:44Z", "stats": {"original_size": 1048576000, "compressed_size": 1, "deduplicated_size": 1040000000, "nfiles": 1234}},
  {"name": "example.org-2026-12-06T00:12:44Z", "stats": {"original_size": 1048700000, "compressed_size": 1, "deduplicated_size": 51200, "nfiles": 1240}}
]}"#;
        assert_eq!(
            table(said).unwrap(),
            "ARCHIVE                           AGE         SIZE  FILES   ITS OWN\n\
             example.org-2026-12-04T03:12:44Z  2 days   1.05 GB   1234   1.04 GB\n\
             example.org-2026-12-06T00:12:44Z  3 hours  1.05 GB   1240  51.20 kB\n"
        );
    }

    #[test]
    fn an_archive_name_ends_with_its_utc_time() {
        // `date -d 2026-12-06T03:12:44Z +%s`
        assert_eq!(
            made_at("example.org-2026-12-06T03:12:44Z"),
            Some(1_796_526_764)
        );
        assert_eq!(made_at("x-2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(made_at("example.org-manual"), None);
        assert_eq!(made_at("é"), None);
    }

    #[test]
    fn an_empty_repository_says_so_and_a_garbled_answer_is_an_error() {
        assert_eq!(
            table("now 1\n{\"archives\": []}").unwrap(),
            "No archive of this host yet.\n"
        );
        let error = table("Traceback\n").unwrap_err();
        assert!(
            format!("{error:#}").contains("did not say its time"),
            "{error:#}"
        );
    }
}
