//! The one format the host program answers in, and the on-host record is
//! written in: a line per fact, `KIND FIELD...`, words separated by one
//! space, the last field taking the rest of the line (a path may hold
//! spaces), bytes as base64; a program that ran to its end says
//! `matrixctl-done` last. Errors go to stderr as `matrixctl: WHY`.

/// The `N` fields of `line`, or none when it has fewer.
pub(crate) fn fields<const N: usize>(line: &str) -> Option<[&str; N]> {
    let mut words = line.splitn(N, ' ');
    let mut fields = [""; N];
    for field in &mut fields {
        *field = words.next()?;
    }
    Some(fields)
}

/// A line of a host's answer as its KIND and the rest.
pub(crate) fn kind_and_rest(line: &str) -> (&str, &str) {
    line.split_once(' ').unwrap_or((line, ""))
}

/// The lines of a host's answer, each as its KIND and the rest.
pub(crate) fn answer_lines(answer: &str) -> impl Iterator<Item = (&str, &str)> {
    answer.lines().map(kind_and_rest)
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn the_last_field_takes_the_rest_and_too_few_is_none() {
        assert_eq!(fields::<3>("a b c d"), Some(["a", "b", "c d"]));
        assert_eq!(fields::<3>("a b"), None);
        assert_eq!(fields::<1>(""), Some([""]));
        let lines: Vec<_> = super::answer_lines("run-running\nhealth a b\n").collect();
        assert_eq!(lines, [("run-running", ""), ("health", "a b")]);
    }
}
