//! Small helpers for mail addresses as they appear in envelopes.

/// The domain part of an address (after the last `@`), or `""` when there is none.
///
/// ```
/// assert_eq!(sendguard::model::domain_of("Anna@Example.TEST"), "Example.TEST");
/// assert_eq!(sendguard::model::domain_of("postmaster"), "");
/// ```
pub fn domain_of(address: &str) -> &str {
    match address.rfind('@') {
        Some(i) => &address[i + 1..],
        None => "",
    }
}

/// Lower-cases an address and trims surrounding whitespace and angle brackets, the form used for
/// every comparison (suppression, audiences, ledger).
pub fn normalize_address(address: &str) -> String {
    let a = address.trim();
    let a = a.strip_prefix('<').unwrap_or(a);
    let a = a.strip_suffix('>').unwrap_or(a);
    a.trim().to_lowercase()
}

/// Removes a `+tag` sub-address from the local part: `anna+news@x.test` becomes `anna@x.test`.
///
/// Addresses without a tag, or whose local part starts with `+`, come back unchanged.
pub fn strip_plus_tag(address: &str) -> std::borrow::Cow<'_, str> {
    let Some(at) = address.rfind('@') else {
        return address.into();
    };
    let local = &address[..at];
    match local.find('+') {
        Some(p) if p > 0 => format!("{}{}", &local[..p], &address[at..]).into(),
        _ => address.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(
            normalize_address(" <Anna@Example.Test> "),
            "anna@example.test"
        );
        assert_eq!(strip_plus_tag("anna+news@x.test"), "anna@x.test");
        assert_eq!(strip_plus_tag("+anna@x.test"), "+anna@x.test");
        assert_eq!(strip_plus_tag("anna@x.test"), "anna@x.test");
        assert_eq!(strip_plus_tag("a+b+c@x.test"), "a@x.test");
        assert_eq!(domain_of("a@b@c.test"), "c.test");
    }
}
