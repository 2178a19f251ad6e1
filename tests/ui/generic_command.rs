use eventcore::{Command, StreamId};

#[derive(Command)]
struct Deposit<T> {
    #[stream(Account)]
    account: StreamId,
    tag: T,
}

fn main() {}
