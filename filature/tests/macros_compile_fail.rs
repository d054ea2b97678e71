//! What the attribute macros refuse, and how they say it: each file in `tests/ui` must fail to
//! compile with the error recorded next to it (`.stderr`). Regenerate after a deliberate
//! message change with `TRYBUILD=overwrite cargo test -p filature --test macros_compile_fail`,
//! then read the diff.

#[test]
fn macro_misuse_is_a_clear_compile_error() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
