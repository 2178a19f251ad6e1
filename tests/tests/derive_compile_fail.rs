//! Misuse of `#[derive(Command)]` gets a readable compile error: each case
//! in `tests/ui/` is compiled and its error pinned in the `.stderr` beside it
//! (regenerate with `TRYBUILD=overwrite` after a deliberate change).

#[test]
fn derive_misuse_is_a_readable_compile_error() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/stream_without_view.rs");
    cases.compile_fail("ui/stream_wrong_type.rs");
    cases.compile_fail("ui/tuple_struct.rs");
    cases.compile_fail("ui/no_streams.rs");
    cases.compile_fail("ui/missing_decide.rs");
    cases.compile_fail("ui/not_a_view.rs");
    cases.compile_fail("ui/generic_command.rs");
}
