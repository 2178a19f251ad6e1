use eventcore::{Command, StreamId};

#[derive(Command)]
struct Deposit(#[stream(Account)] StreamId);

fn main() {}
