//! Compiles and runs the README's code blocks, so the README stays true.
#[doc = include_str!("../../README.md")]
#[allow(dead_code)]
struct Readme;
