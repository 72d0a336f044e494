//! Assertions on output text: the one "does this output say that" check, with the whole output
//! in the failure message.

/// Asserts that `haystack` contains `needle`; on failure prints the needle and the whole text.
#[track_caller]
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(haystack.contains(needle), "no {needle:?} in:\n{haystack}");
}

/// Asserts that `haystack` does not contain `needle`; on failure prints the needle and the
/// whole text.
#[track_caller]
pub fn assert_lacks(haystack: &str, needle: &str) {
    assert!(!haystack.contains(needle), "{needle:?} in:\n{haystack}");
}
