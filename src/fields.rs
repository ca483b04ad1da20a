//! The line formats the host program and the on-host record speak: words
//! separated by one space, the last taking the rest of the line (a path
//! may hold spaces).

/// The `N` fields of `line`, or none when it has fewer.
pub(crate) fn fields<const N: usize>(line: &str) -> Option<[&str; N]> {
    let mut words = line.splitn(N, ' ');
    let mut fields = [""; N];
    for field in &mut fields {
        *field = words.next()?;
    }
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn the_last_field_takes_the_rest_and_too_few_is_none() {
        assert_eq!(fields::<3>("a b c d"), Some(["a", "b", "c d"]));
        assert_eq!(fields::<3>("a b"), None);
        assert_eq!(fields::<1>(""), Some([""]));
    }
}
